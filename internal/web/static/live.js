// kiln live updates: follows server-sent events on the job and task pages.
// Everything works without it; it only keeps an open page current. Log text
// is added as text nodes, never as HTML.
"use strict";
(function () {
  function json(e) { return JSON.parse(e.data); }

  function setStatus(el, s) {
    if (!el) return;
    el.textContent = s.status.replace(/_/g, " ");
    el.className = "st st-" + s.status;
  }

  function append(pre, ev) {
    var seq = parseInt(pre.dataset.seq, 10);
    if (ev.seq <= seq) return; // already shown (a reconnect resends)
    var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    pre.appendChild(document.createTextNode(ev.text));
    pre.dataset.seq = String(ev.seq);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function logPane(ev) {
    var id = "livelog-" + ev.task + "-" + ev.attempt;
    var box = document.getElementById(id);
    if (box) return box.querySelector("pre");
    box = document.createElement("div");
    box.className = "livelog";
    box.id = id;
    var h = document.createElement("h3");
    var a = document.createElement("a");
    a.href = "/tasks/" + ev.task;
    a.textContent = "task " + ev.task;
    h.appendChild(document.createTextNode(ev.platform + " · "));
    h.appendChild(a);
    h.appendChild(document.createTextNode(", attempt " + ev.attempt));
    var pre = document.createElement("pre");
    pre.className = "log";
    pre.dataset.seq = "-1";
    box.appendChild(h);
    box.appendChild(pre);
    document.getElementById("logs").appendChild(box);
    return pre;
  }

  // refresh loads this page again and puts its main part in place of the
  // open one, so the page shows exactly what a fresh load shows (the
  // attempts, finish times and artifacts a build's end brings). The new
  // markup comes from this server's own page; scripts in it do not run.
  // html[data-live] says where it stands: "loading", then "fresh".
  var loading = false, again = false;
  function refresh() {
    if (loading) { again = true; return; }
    loading = true;
    document.documentElement.dataset.live = "loading";
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        var main = document.querySelector("main");
        if (fresh && main) main.replaceWith(document.adoptNode(fresh));
      })
      .catch(function () { /* the open page stays; a reload shows the rest */ })
      .then(function () {
        loading = false;
        if (again) { again = false; refresh(); return; }
        document.documentElement.dataset.live = "fresh";
        var task = document.querySelector("pre.log[data-events], p.live[data-events]");
        if (task) followTask(task);
        var job = document.querySelector("div.live[data-events]");
        if (job) followJob(job);
      });
  }

  // streamOpen marks the page once an event stream is open (the server
  // follows the database from then on), for tests and scripts to wait on.
  function streamOpen(es) {
    es.addEventListener("open", function () { document.documentElement.dataset.stream = "open"; });
  }

  function followFarm(main) {
    var es = new EventSource(main.dataset.refresh);
    streamOpen(es);
    es.addEventListener("changed", refresh);
  }

  function followJob(root) {
    var params = [];
    root.querySelectorAll("pre.log[data-task]").forEach(function (pre) {
      params.push("log=" + pre.dataset.task + "." + pre.dataset.attempt + "." + pre.dataset.seq);
    });
    var url = root.dataset.events + (params.length ? "?" + params.join("&") : "");
    var es = new EventSource(url);
    streamOpen(es);
    es.addEventListener("status", function (e) { setStatus(document.getElementById("job-status"), json(e)); });
    es.addEventListener("tasks", function (e) {
      // Why the job waits changes with its tasks: the page loads again.
      if (document.getElementById("waiting")) { es.close(); refresh(); return; }
      document.getElementById("tasks").innerHTML = json(e);
    });
    es.addEventListener("log", function (e) { var ev = json(e); append(logPane(ev), ev); });
    es.addEventListener("end", function (e) { setStatus(document.getElementById("job-status"), json(e)); es.close(); refresh(); });
  }

  function followTask(el) {
    var es = new EventSource(el.dataset.events);
    streamOpen(es);
    var pre = document.getElementById("log");
    es.addEventListener("status", function (e) { setStatus(document.getElementById("task-status"), json(e)); });
    es.addEventListener("log", function (e) { if (pre) append(pre, json(e)); });
    es.addEventListener("reload", function () { es.close(); refresh(); });
    es.addEventListener("end", function (e) { setStatus(document.getElementById("task-status"), json(e)); es.close(); refresh(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    // A failed task's log opens at its first error.
    var err = document.getElementById("first-error");
    if (err && !window.location.hash) err.scrollIntoView({ block: "center" });
    if (!window.EventSource) return;
    var job = document.querySelector("div.live[data-events]");
    if (job) followJob(job);
    var task = document.querySelector("pre.log[data-events], p.live[data-events]");
    if (task) followTask(task);
    var main = document.querySelector("main[data-refresh]");
    if (main) followFarm(main);
  });
})();
