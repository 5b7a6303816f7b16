/* modelcaliper New run page: the form sent as JSON to /api/jobs, the job's progress from its
 * event stream (/api/jobs/{id}/events), then the run's page. Text reaches the page only
 * through textContent. State for tests: window.caliperNewRun = {job, events, queue}.
 */
(function () {
  "use strict";
  var source = document.getElementById("newrun-data");
  var PAGE = source ? JSON.parse(source.textContent || "{}") : {};
  var state = { job: null, events: [], queue: PAGE.jobs || [] };
  window.caliperNewRun = state;
  var form = document.getElementById("newrun-form");
  var ACTIVE = { queued: true, running: true };
  var pollTimer = null;

  function $(id) { return document.getElementById(id); }
  function setText(el, text) { if (el) el.textContent = text == null ? "" : String(text); }

  function option(select, value, label) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    select.appendChild(o);
  }

  /* The version list follows the chosen model (a base path's numbered versions). */
  function fillVersions() {
    var select = form.elements.model_version;
    var chosen = form.elements.model.value;
    var model = (PAGE.models || []).filter(function (m) { return m.path === chosen; })[0];
    while (select.options.length > 1) select.remove(1);
    ((model && model.versions) || []).slice().reverse().forEach(function (v) {
      option(select, v, v);
    });
  }

  /* The encodings the chosen protocol takes (none for the gRPC protocols). */
  function fillEncodings() {
    var select = form.elements.encoding;
    var choices = (PAGE.encodings || {})[form.elements.protocol.value] || [];
    while (select.options.length > 1) select.remove(1);
    choices.forEach(function (e) { option(select, e, e); });
    select.disabled = choices.length === 0;
  }

  function fields() {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled) return;
      var value = String(el.value || "").trim();
      if (!value) return;
      if (el.name === "tag") {
        out.tag = value.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
      } else if (el.name === "assert") {
        out.assert = value.split("\n").map(function (t) { return t.trim(); }).filter(Boolean);
      } else {
        out[el.name] = value;
      }
    });
    return out;
  }

  function renderQueue(jobs) {
    state.queue = jobs;
    var body = document.querySelector("#queue tbody");
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    if (!jobs.length) {
      var empty = document.createElement("tr");
      var cell = document.createElement("td");
      cell.colSpan = 5;
      cell.className = "empty";
      cell.textContent = "No runs queued from this page yet.";
      empty.className = "empty-row";
      empty.appendChild(cell);
      body.appendChild(empty);
      return;
    }
    jobs.forEach(function (job) {
      var row = document.createElement("tr");
      row.setAttribute("data-job", job.id);
      var stateText = job.state + (job.position ? " (#" + job.position + ")" : "");
      [job.id, job.model, stateText, (job.created_at || "").replace("T", " ").slice(0, 19)]
        .forEach(function (text) {
          var td = document.createElement("td");
          td.textContent = text;
          row.appendChild(td);
        });
      var last = document.createElement("td");
      if (job.run_id) {
        var a = document.createElement("a");
        a.href = "/runs/" + encodeURIComponent(job.run_id);
        a.textContent = job.run_id;
        last.appendChild(a);
      } else if (job.error) {
        last.className = "reason";
        last.textContent = job.error;
      }
      row.appendChild(last);
      body.appendChild(row);
    });
  }

  function refreshQueue() {
    fetch("/api/jobs", { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) {
        if (!answer) return;
        renderQueue(answer.jobs);
        var busy = answer.jobs.some(function (j) { return ACTIVE[j.state]; });
        schedulePoll(busy);
      })
      .catch(function () { schedulePoll(false); });
  }

  function schedulePoll(busy) {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = busy ? setTimeout(refreshQueue, 2000) : null;
  }

  function showJob(job) {
    state.job = job;
    $("job").hidden = false;
    setText($("job-id"), job.id);
    setText($("job-state"), job.state);
    setText($("job-position"), job.position ? "#" + job.position + " in the queue" : "");
    if (job.progress) showProgress(job.progress);
    if (job.error) setText($("job-error"), job.error);
  }

  function showProgress(p) {
    setText($("job-line"), p.line);
    var bar = $("job-progress");
    if (p.total_s > 0) { bar.max = p.total_s; bar.value = Math.min(p.elapsed_s, p.total_s); }
  }

  function note(text) {
    var li = document.createElement("li");
    li.textContent = text;
    $("job-notes").appendChild(li);
  }

  /* Follow one job's event stream until its final event. */
  function watch(job) {
    showJob(job);
    var stream = new EventSource("/api/jobs/" + encodeURIComponent(job.id) + "/events");
    function on(name, handle) {
      stream.addEventListener(name, function (event) {
        var data = JSON.parse(event.data);
        state.events.push({ event: name, data: data });
        handle(data);
      });
    }
    on("started", function () {
      setText($("job-state"), "running");
      setText($("job-position"), "");
      refreshQueue();
    });
    on("note", function (data) { note(data.line); });
    on("progress", showProgress);
    on("done", function (data) {
      stream.close();
      setText($("job-state"), "completed");
      if (data.run_id) window.location.assign("/runs/" + encodeURIComponent(data.run_id));
    });
    on("failed", function (data) {
      stream.close();
      setText($("job-state"), "failed");
      setText($("job-error"), data.error);
      refreshQueue();
    });
  }

  function submit(event) {
    event.preventDefault();
    setText($("form-error"), "");
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    fetch("/api/jobs", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(fields())
    }).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    }).then(function (answer) {
      button.disabled = false;
      if (answer.status !== 202) {
        setText($("form-error"), answer.body.error || ("refused (" + answer.status + ")"));
        return;
      }
      history.replaceState(null, "", "/runs/new?job=" + encodeURIComponent(answer.body.id));
      watch(answer.body);
      refreshQueue();
    }).catch(function (error) {
      button.disabled = false;
      setText($("form-error"), "the UI did not answer: " + error);
    });
  }

  if (form) {
    form.elements.model.addEventListener("change", fillVersions);
    form.elements.protocol.addEventListener("change", fillEncodings);
    form.addEventListener("submit", submit);
    fillVersions();
    fillEncodings();
  }
  if (PAGE.watch) {
    var watched = (PAGE.jobs || []).filter(function (j) { return j.id === PAGE.watch; })[0];
    if (watched) watch(watched);
  }
  schedulePoll((PAGE.jobs || []).some(function (j) { return ACTIVE[j.state]; }));
})();
