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

  function followJob(root) {
    var params = [];
    root.querySelectorAll("pre.log[data-task]").forEach(function (pre) {
      params.push("log=" + pre.dataset.task + "." + pre.dataset.attempt + "." + pre.dataset.seq);
    });
    var url = root.dataset.events + (params.length ? "?" + params.join("&") : "");
    var es = new EventSource(url);
    es.addEventListener("status", function (e) { setStatus(document.getElementById("job-status"), json(e)); });
    es.addEventListener("tasks", function (e) { document.getElementById("tasks").innerHTML = json(e); });
    es.addEventListener("log", function (e) { var ev = json(e); append(logPane(ev), ev); });
    es.addEventListener("end", function (e) { setStatus(document.getElementById("job-status"), json(e)); es.close(); });
  }

  function followTask(el) {
    var es = new EventSource(el.dataset.events);
    var pre = document.getElementById("log");
    es.addEventListener("status", function (e) { setStatus(document.getElementById("task-status"), json(e)); });
    es.addEventListener("log", function (e) { if (pre) append(pre, json(e)); });
    es.addEventListener("reload", function () { es.close(); window.location.reload(); });
    es.addEventListener("end", function (e) { setStatus(document.getElementById("task-status"), json(e)); es.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.EventSource) return;
    var job = document.querySelector("div.live[data-events]");
    if (job) followJob(job);
    var task = document.querySelector("pre.log[data-events], p.live[data-events]");
    if (task) followTask(task);
  });
})();
