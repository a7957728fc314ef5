// Admin, classifier versions: while a retrain runs, follow its progress bar (the worker writes it):
// reload every 3 s until it ends.
if (document.querySelector(".retrain-progress")) setTimeout(() => location.reload(), 3000);
