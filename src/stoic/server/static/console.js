// stoic console: keyboard shortcuts and live updates. Every page works without this file.
"use strict";

(function () {
  // Set once the page sends a form: a live update must not reload it then, since the reload
  // would cancel the navigation to the answer (and hide a decision the person just made).
  var leaving = false;
  var liveSource = null;

  function leave() {
    leaving = true;
    if (liveSource) { liveSource.close(); }
  }

  function send(form) {
    leave();
    form.submit();
  }

  function typing(event) {
    var t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
  }

  function submitWith(form, values) {
    Object.keys(values).forEach(function (name) {
      var field = form.querySelector('[name="' + name + '"]');
      if (field) { field.value = values[name]; }
    });
    send(form);
  }

  function proposalKeys(form) {
    var decision = null;
    document.addEventListener("keydown", function (event) {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) { return; }
      if (!decision) {
        decision = document.createElement("input");
        decision.type = "hidden";
        decision.name = "decision";
        form.appendChild(decision);
      }
      if (event.key === "a") {
        decision.value = "approve"; send(form);
      } else if (event.key === "d") {
        decision.value = "defer"; send(form);
      } else if (event.key === "r") {
        var reason = window.prompt("Why reject it?");
        if (reason && reason.trim()) {
          form.querySelector('[name="reason"]').value = reason; decision.value = "reject"; send(form);
        }
      } else if (event.key === "f") {
        var flag = document.getElementById("flag");
        if (flag) { send(flag); }
      }
    });
  }

  function queueKeys() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr.proposal"));
    if (!rows.length) { return; }
    var at = 0;
    function mark() {
      rows.forEach(function (row, i) { row.classList.toggle("current", i === at); });
      rows[at].scrollIntoView({block: "nearest"});
    }
    mark();
    var decide = document.getElementById("row-decision");
    var flag = document.getElementById("row-flag");
    document.addEventListener("keydown", function (event) {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) { return; }
      var row = rows[at];
      var id = row.getAttribute("data-id");
      var shown = {
        sha256: row.getAttribute("data-sha256"),
        shown_at: row.getAttribute("data-shown-at"),
        shown_sig: row.getAttribute("data-shown-sig")
      };
      if (event.key === "j") { at = Math.min(rows.length - 1, at + 1); mark(); }
      else if (event.key === "k") { at = Math.max(0, at - 1); mark(); }
      else if (event.key === "Enter") { window.location = "/proposals/" + id; }
      else if (event.key === "a" || event.key === "d" || event.key === "r") {
        var values = Object.assign({decision: {a: "approve", d: "defer", r: "reject"}[event.key]}, shown);
        if (event.key === "r") {
          var reason = window.prompt("Why reject " + id + "?");
          if (!reason || !reason.trim()) { return; }
          values.reason = reason;
        }
        decide.action = "/proposals/" + id + "/decide";
        submitWith(decide, values);
      } else if (event.key === "f") {
        flag.action = "/proposals/" + id + "/flag";
        submitWith(flag, {note: window.prompt("What worries you about " + id + "?") || ""});
      }
    });
  }

  function live() {
    if (!document.body.hasAttribute("data-live") || !window.EventSource) { return; }
    var after = encodeURIComponent(document.body.getAttribute("data-live"));
    liveSource = new EventSource("/events?after=" + after);
    liveSource.addEventListener("record", function () {
      liveSource.close();
      if (!leaving) { window.location.reload(); }
    });
  }

  document.addEventListener("submit", leave, true);  // a form sent with its own button
  window.addEventListener("beforeunload", leave);

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("decision");
    if (form) { proposalKeys(form); } else { queueKeys(); }
    live();
  });
})();
