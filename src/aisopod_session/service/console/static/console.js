// Progressive enhancement only: every page works without it.
// Live updates come from the change feed (a Server-Sent Events stream of the console's own,
// scoped like the page): the "sessions by status" figures are fetched again when a session
// changes, and a session's transcript gets its new messages as they are stored. EventSource
// reconnects by itself, resuming after the last change it saw (Last-Event-ID).
"use strict";

const SESSION_KINDS = ["session.created", "session.updated", "session.reset",
  "session.compacted", "session.deleted", "session.imported", "person.erased"];

function onChanges(url, kinds, handle) {
  const source = new EventSource(url, { withCredentials: true });
  for (const kind of kinds) {
    source.addEventListener(kind, (event) => handle(kind, JSON.parse(event.data)));
  }
  return source;
}

document.querySelectorAll("[data-counts-url]").forEach((list) => {
  let pending = null;
  const refresh = async () => {
    pending = null;
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
      // The next change tries again; the figures on the page stay as they were.
    }
  };
  // Many changes at once (a sweep, an import) fetch the counts once.
  onChanges(list.dataset.changesUrl, SESSION_KINDS, () => {
    if (pending === null) pending = setTimeout(refresh, 250);
  });
});

// Only the newest page of a live session follows (it alone has data-changes-url). The transcript
// reads oldest to newest, so new messages go at the bottom, in the server's markup: the same
// template as the page's, tool calls and results folded in a closed <details>.
document.querySelectorAll("ol.transcript[data-changes-url]").forEach((transcript) => {
  const note = document.querySelector("[data-changed-note]");
  const append = async () => {
    try {
      const url = `${transcript.dataset.tailUrl}?after_id=${transcript.dataset.lastId}`;
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      const template = document.createElement("template");
      template.innerHTML = await response.text();  // the server's escaped HTML fragment
      const items = template.content.querySelectorAll("li.message[data-id]");
      if (items.length) transcript.querySelector("li.muted")?.remove();
      for (const item of items) {
        transcript.append(item);
        transcript.dataset.lastId = item.dataset.id;
      }
    } catch (error) {
      // The next appended message fetches again from the same last id.
    }
  };
  onChanges(transcript.dataset.changesUrl, ["messages.appended", ...SESSION_KINDS,
    "messages.removed"], (kind) => {
    if (kind === "messages.appended") {
      append();
    } else if (note && kind !== "session.created") {
      note.hidden = false;
    }
  });
});
