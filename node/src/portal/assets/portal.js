// The portal's only script: live parts of a page refresh when the node
// says its ledger changed (server-sent events from /events), and every few
// seconds too when marked data-poll (function calls are no ledger events,
// so no change event tells of them); a running
// task's logs grow as it writes them (each log marked data-follow reads
// its streamed body); a chosen job file fills the submit form's text.
// Pages work without it, by reloading.
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
        if (fresh && fresh.innerHTML !== part.innerHTML) morph(part, fresh);
      }
    }
  } finally {
    busy = false;
    if (again) { again = false; refresh(); }
  }
}

// Makes `old`'s children equal to `fresh`'s, replacing only the nodes that
// differ: a button in a row that did not change stays the same element, so
// a click that lands during a refresh is not lost.
function morph(old, fresh) {
  const was = old.childNodes;
  const now = fresh.childNodes;
  if (was.length !== now.length) {
    old.innerHTML = fresh.innerHTML;
    return;
  }
  for (let i = 0; i < now.length; i++) {
    const [a, b] = [was[i], now[i]];
    if (a.isEqualNode(b)) continue;
    if (a.nodeType === Node.ELEMENT_NODE && a.cloneNode(false).isEqualNode(b.cloneNode(false))) {
      morph(a, b);
    } else {
      a.replaceWith(document.importNode(b, true));
    }
  }
}

// How often parts marked data-poll refresh, in ms.
const POLL_EVERY = 2000;

function listen() {
  if (!document.querySelector("[data-live]")) return;
  if (document.querySelector("[data-poll]")) setInterval(refresh, POLL_EVERY);
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

// Characters of a followed log kept on the page (its end); the whole is
// in the download once the task ended.
const KEEP = 1 << 20;

// Shows a followed log's bytes as they arrive; when its body ends (the
// attempt ended), takes the log as the page now shows it.
async function follow(log) {
  const url = log.dataset.follow;
  delete log.dataset.follow;
  let first = true;
  try {
    const answer = await fetch(url, { credentials: "same-origin" });
    if (answer.ok && answer.body) {
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const text = (first ? "" : log.textContent) + value;
        first = false;
        log.textContent = text.length > KEEP ? text.slice(text.length - KEEP) : text;
        log.scrollTop = log.scrollHeight;
      }
    }
  } catch (e) {
    // The node went away or the page is closing: the reload below says which.
  }
  setTimeout(() => renewLog(log.id), first ? 1000 : 100);
}

// Takes log `id` from the page as the node renders it now, following it
// again if the task still runs (a retry, say).
async function renewLog(id) {
  const answer = await fetch(location.href, { credentials: "same-origin" });
  if (!answer.ok) return;
  const page = new DOMParser().parseFromString(await answer.text(), "text/html");
  const fresh = page.getElementById(id);
  const old = document.getElementById(id);
  if (!fresh || !old) return;
  const heading = old.previousElementSibling;
  const freshHeading = fresh.previousElementSibling;
  if (heading && freshHeading && heading.tagName === "H2") heading.innerHTML = freshHeading.innerHTML;
  if (fresh.dataset.follow) {
    old.dataset.follow = fresh.dataset.follow;
    follow(old);
  } else {
    old.textContent = fresh.textContent;
  }
}

listen();
for (const log of document.querySelectorAll("pre.log[data-follow]")) follow(log);
fillFromFile();
