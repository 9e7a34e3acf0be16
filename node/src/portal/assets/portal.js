// The portal's only script: live parts of a page refresh when the node
// says its ledger changed (server-sent events from /events); a chosen job
// file fills the submit form's text. Pages work without it, by reloading.
"use strict";

let busy = false;
let again = false;

// Fetches this page again and swaps in each part marked data-live.
async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  try {
    const answer = await fetch(location.href, { credentials: "same-origin" });
    if (answer.ok) {
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const part of document.querySelectorAll("[data-live][id]")) {
        const fresh = page.getElementById(part.id);
        if (fresh && fresh.innerHTML !== part.innerHTML) part.innerHTML = fresh.innerHTML;
      }
    }
  } finally {
    busy = false;
    if (again) { again = false; refresh(); }
  }
}

function listen() {
  if (!document.querySelector("[data-live]")) return;
  const mark = document.getElementById("live");
  const events = new EventSource("/events");
  events.addEventListener("open", () => { if (mark) mark.textContent = "● live"; });
  events.addEventListener("error", () => { if (mark) mark.textContent = "○ reconnecting"; });
  events.addEventListener("change", refresh);
}

function fillFromFile() {
  for (const input of document.querySelectorAll("input[type=file][data-fills]")) {
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return;
      const form = input.form;
      form.elements[input.dataset.fills].value = await file.text();
      if (form.elements.file) form.elements.file.value = file.name;
    });
  }
}

listen();
fillFromFile();
