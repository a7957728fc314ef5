// Admin: capture enrolment photos from the webcam into the upload field, and show live progress.
const input = document.getElementById("id_face_photos");
const video = document.getElementById("capture-video");
const startButton = document.getElementById("capture-start");
const takeButton = document.getElementById("capture-take");
const statusLine = document.getElementById("capture-status");
const list = document.getElementById("capture-list");
const captured = new DataTransfer();

if (startButton && input) {
  startButton.addEventListener("click", async () => {
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
      video.hidden = false;
      takeButton.hidden = false;
      startButton.hidden = true;
      takeButton.focus();
    } catch (error) {
      statusLine.textContent = `${error.name}: ${error.message}`;
    }
  });
  takeButton.addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      const name = `camera-${new Date().toISOString().replace(/[:.]/g, "-")}.jpg`;
      // Keep files chosen by hand, add the capture: the form then uploads them together.
      for (const file of input.files) if (![...captured.files].includes(file)) captured.items.add(file);
      captured.items.add(new File([blob], name, { type: "image/jpeg" }));
      input.files = captured.files;
      const image = document.createElement("img");
      image.src = URL.createObjectURL(blob);
      image.alt = name;
      list.append(image);
      statusLine.textContent = `${captured.files.length} ✓`;
    }, "image/jpeg", 0.92);
  });
}

const progress = document.getElementById("enrol-progress");
async function poll() {
  const response = await fetch(progress.dataset.url, { credentials: "same-origin" });
  if (!response.ok) return;
  const data = await response.json();
  const pending = data.photos.filter((p) => p.state === "queued" || p.state === "processing");
  for (const photo of data.photos) {
    const cell = document.querySelector(`.enrol-state[data-photo="${photo.id}"]`);
    if (cell) cell.textContent = photo.reason ? `${photo.label}: ${photo.reason}` : photo.label;
  }
  if (pending.length === 0) {
    if (!progress.hidden) location.reload(); // show the new thumbnails and counts
    return;
  }
  progress.hidden = false;
  const done = data.photos.length - pending.length;
  document.getElementById("enrol-progress-bar").value = Math.round((100 * done) / data.photos.length);
  document.getElementById("enrol-progress-text").textContent = `${done} / ${data.photos.length}`;
  setTimeout(poll, 1500);
}
if (progress) poll();
