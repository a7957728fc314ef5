// Face sign-in: camera → JPEG frames over a websocket (with backpressure) → ticket → HTTP sign-in.
// The protocol is documented in docs/protocol.md; codes arrive in the server's "hello" message.

const root = document.getElementById("face-login");
const messages = JSON.parse(document.getElementById("face-login-messages").textContent);
const video = document.getElementById("face-video");
const overlay = document.getElementById("face-overlay");
const statusLine = document.getElementById("face-status");
const progress = document.getElementById("face-progress");
const startButton = document.getElementById("face-start");
const retryButton = document.getElementById("face-retry");
const challengeBox = document.getElementById("face-challenge");
const completeForm = document.getElementById("face-complete");
const flashLayer = document.getElementById("face-flash");
const cameraBox = video.closest(".camera");

const MAX_SIDE = 640; // long side of a sent frame, in pixels
const ANSWER_WINDOW_MS = 1500; // send anyway if the server has not answered within this long
const CHALLENGE_ARROWS = { turn_left: "←", turn_right: "→", look: "◎", hold: "✓" };
// Liveness colours: the server names the colour each next frame must be lit by; the camera needs a moment
// to see a new colour, so the next frame waits this long after a change (facelogin/pipeline/flash.py).
const FLASH_SETTLE_MS = 90;
const FACE_SEEN = new Set(["face_found", "look_at_camera", "hold_still"]);

let stream = null;
let socket = null;
let config = null;
let awaitingAnswer = false;
let lastSentAt = 0;
let finished = false;
let captureTimer = null;
let flashColour = "";
let flashChangedAt = 0;
const capture = document.createElement("canvas");

function showFlash(colour) {
  const value = colour ? `rgb(${colour.map((v) => Number(v) | 0).join(",")})` : "";
  if (value === flashColour) return;
  flashColour = value;
  flashChangedAt = performance.now();
  if (flashLayer) flashLayer.style.backgroundColor = value;
  if (cameraBox) {
    cameraBox.classList.toggle("lit", Boolean(value));
    cameraBox.style.outlineColor = value;
  }
}

function say(text, tone = "") {
  statusLine.textContent = text;
  statusLine.className = `status ${tone}`.trim();
}

function fail(key, extra = {}) {
  finished = true;
  stopCapture();
  showFlash(null);
  let text = messages[key] || messages.server_error;
  if (extra.seconds !== undefined) text = text.replace("{seconds}", extra.seconds);
  say(text, "error");
  challengeBox.hidden = true;
  retryButton.hidden = false;
  startButton.hidden = true;
  retryButton.focus();
}

function stopCapture() {
  if (captureTimer) clearInterval(captureTimer);
  captureTimer = null;
}

function stopCamera() {
  stopCapture();
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
}

async function openCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    fail("unsupported");
    return false;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" },
      audio: false,
    });
  } catch (error) {
    if (error.name === "NotFoundError" || error.name === "OverconstrainedError") fail("camera_missing");
    else if (error.name === "NotAllowedError" || error.name === "SecurityError") fail("camera_denied");
    else fail("camera_error");
    return false;
  }
  video.srcObject = stream;
  await video.play().catch(() => {});
  return true;
}

function drawFace(answer) {
  const context = overlay.getContext("2d");
  if (answer.width && answer.height && (overlay.width !== answer.width || overlay.height !== answer.height)) {
    overlay.width = answer.width;
    overlay.height = answer.height;
  }
  context.clearRect(0, 0, overlay.width, overlay.height);
  if (!answer.face) return;
  const [x1, y1, x2, y2] = answer.face.box;
  context.lineWidth = Math.max(2, overlay.width / 160);
  context.strokeStyle = answer.guidance === "face_found" ? "#35c46a" : "#f0a500";
  context.strokeRect(x1, y1, x2 - x1, y2 - y1);
}

function showChallenge(challenge) {
  showFlash(challenge && challenge.flash);
  challengeBox.dataset.step = (challenge && challenge.step) || "";
  if (!challenge || !challenge.step) {
    challengeBox.hidden = true;
    return;
  }
  challengeBox.hidden = false;
  challengeBox.querySelector(".arrow").textContent = CHALLENGE_ARROWS[challenge.step] || "";
  challengeBox.querySelector(".text").textContent = messages[`challenge_${challenge.step}`] || challenge.step;
}

function sendFrame() {
  if (finished || !socket || socket.readyState !== WebSocket.OPEN || video.readyState < 2) return;
  // Backpressure: one frame in flight, unless the server has been silent for a while.
  if (awaitingAnswer && performance.now() - lastSentAt < ANSWER_WINDOW_MS) return;
  // A new liveness colour must be on the face before the frame that answers it is taken.
  if (flashColour && performance.now() - flashChangedAt < FLASH_SETTLE_MS) return;
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  capture.width = Math.round(video.videoWidth * scale);
  capture.height = Math.round(video.videoHeight * scale);
  capture.getContext("2d").drawImage(video, 0, 0, capture.width, capture.height);
  awaitingAnswer = true;
  lastSentAt = performance.now();
  capture.toBlob(
    (blob) => {
      if (!blob || finished || socket.readyState !== WebSocket.OPEN) return;
      if (config && blob.size > config.max_frame_bytes) return; // never send what the server must refuse
      socket.send(blob);
    },
    "image/jpeg",
    0.8,
  );
}

function handleAnswer(answer) {
  switch (answer.type) {
    case "hello":
      config = answer;
      showChallenge(answer.challenge);
      say(messages.look);
      stopCapture();
      captureTimer = setInterval(sendFrame, Math.max(50, answer.frame_interval_ms || 150));
      break;
    case "frame":
      awaitingAnswer = false;
      drawFace(answer);
      showChallenge(answer.challenge);
      progress.value = Math.round(100 * (answer.progress || 0));
      if (FACE_SEEN.has(answer.guidance) && answer.challenge && answer.challenge.step) {
        // The face is in view (turned, if the challenge asked for it): what the person should do now is
        // the challenge's movement.
        say(messages[`challenge_${answer.challenge.step}`] || messages.look, "ok");
      } else {
        say(messages[answer.guidance] || messages.look, answer.guidance === "face_found" ? "ok" : "warn");
      }
      break;
    case "error":
      // "busy" and "too_fast" refuse a frame sent early; the frame in flight still gets its answer.
      if (answer.code !== "busy" && answer.code !== "too_fast") awaitingAnswer = false;
      if (answer.code === "bad_image") say(messages.bad_image, "warn");
      break;
    case "throttled":
      fail("throttled", { seconds: answer.retry_after });
      break;
    case "success":
      finished = true;
      stopCamera();
      showFlash(null);
      progress.value = 100;
      challengeBox.hidden = true;
      say(messages.success, "ok");
      completeForm.elements.ticket.value = answer.ticket;
      completeForm.submit();
      break;
    case "failed":
      fail(answer.reason in messages ? answer.reason : "not_recognised");
      break;
    default:
      break;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}${root.dataset.wsPath}`);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") return;
    handleAnswer(JSON.parse(event.data));
  });
  socket.addEventListener("close", (event) => {
    if (finished) return;
    const close = (config && config.codes && config.codes.close) || {};
    if (event.code === close.no_session) fail("no_session");
    else if (event.code === close.unavailable) fail("unavailable");
    else if (event.code === close.timeout) fail("timeout");
    else if (event.code === close.throttled) fail("throttled", { seconds: "" });
    else if (event.code === close.not_recognised) fail("not_recognised");
    else fail("closed");
  });
}

async function begin() {
  finished = false;
  awaitingAnswer = false;
  progress.value = 0;
  retryButton.hidden = true;
  startButton.hidden = true;
  say(messages.starting);
  if (!stream && !(await openCamera())) return;
  say(messages.connecting);
  connect();
}

startButton.addEventListener("click", begin);
retryButton.addEventListener("click", () => {
  if (socket) socket.close();
  begin();
});
window.addEventListener("pagehide", stopCamera);

// Students expect the camera to start at once; the button stays for browsers that want a gesture.
begin().catch(() => {
  startButton.hidden = false;
  say(messages.start);
});
