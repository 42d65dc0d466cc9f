// The commission report built in the background: the progress bar follows the build's status
// (/reports/builds/<id>.json) and the page opens the report when it is ready.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("build");
  if (!box) return;
  const bar = document.getElementById("build-progress");
  const percent = document.getElementById("build-percent");
  const stage = document.getElementById("build-stage");
  const poll = async () => {
    let status;
    try {
      const resp = await fetch(box.dataset.status, {credentials: "same-origin", cache: "no-store"});
      if (!resp.ok) throw new Error(String(resp.status));
      status = await resp.json();
    } catch (err) {
      setTimeout(poll, 2000);  // the cloud restarting: ask again
      return;
    }
    bar.value = status.progress;
    percent.textContent = status.progress + "%";
    stage.textContent = status.stage;
    if (status.state === "done" || status.state === "failed") {
      window.location.replace(status.url);
      return;
    }
    setTimeout(poll, 500);
  };
  setTimeout(poll, 300);
});
