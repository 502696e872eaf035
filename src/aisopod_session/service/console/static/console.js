// Progressive enhancement only: every page works without it.
// Live counts: refresh the "sessions by status" figures every few seconds.
"use strict";
document.querySelectorAll("[data-counts-url]").forEach((list) => {
  const refresh = async () => {
    try {
      const response = await fetch(list.dataset.countsUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const counts = await response.json();
      for (const [status, count] of Object.entries(counts)) {
        const cell = list.querySelector(`[data-status="${CSS.escape(status)}"]`);
        if (cell) cell.textContent = Number(count).toLocaleString("en-US");
      }
      list.dataset.refreshed = String(Date.now());
    } catch (error) {
      // The next tick tries again; the figures on the page stay as they were.
    }
  };
  setInterval(refresh, 5000);
});
