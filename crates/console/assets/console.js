// countersign console: progressive enhancement only; every page works without it.
// - Live pages (data-live on <body>) listen to /console/events and re-fetch themselves on a
//   change, replacing #live (and dropping the decide forms once the action is decided).
// - The "approve with changes" editor checks its JSON is an object before it is sent.
(function () {
  'use strict';

  function refresh() {
    return fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var next = doc.getElementById('live');
        var cur = document.getElementById('live');
        if (next && cur) cur.replaceWith(document.importNode(next, true));
        if (!doc.querySelector('.decide')) {
          var d = document.querySelector('.decide');
          if (d) d.remove();
        }
        var c = doc.getElementById('queue-count');
        var cc = document.getElementById('queue-count');
        if (c && cc) cc.textContent = c.textContent;
        document.title = doc.title;
        document.body.setAttribute('data-refreshed', String(Date.now()));
      })
      .catch(function () {});
  }

  function live() {
    if (!document.body.hasAttribute('data-live') || !window.EventSource) return;
    var pending = null;
    var source = new EventSource('/console/events');
    source.addEventListener('change', function () {
      if (pending) return;
      pending = setTimeout(function () { pending = null; refresh(); }, 50);
    });
    source.addEventListener('open', function () {
      document.body.setAttribute('data-listening', 'true');
    });
  }

  function jsonEditors() {
    document.querySelectorAll('form[data-json-form]').forEach(function (form) {
      var area = form.querySelector('textarea[data-json-object]');
      var error = form.querySelector('.field-error');
      if (!area) return;
      function check() {
        try {
          var v = JSON.parse(area.value);
          if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('the parameters must be a JSON object, like {"name": "value"}');
          area.setCustomValidity('');
          area.removeAttribute('aria-invalid');
          if (error) error.textContent = '';
          return true;
        } catch (e) {
          var msg = 'Not valid JSON: ' + e.message;
          area.setCustomValidity(msg);
          area.setAttribute('aria-invalid', 'true');
          if (error) error.textContent = msg;
          return false;
        }
      }
      area.addEventListener('input', check);
      form.addEventListener('submit', function (ev) { if (!check()) ev.preventDefault(); });
    });
  }

  // Audit inclusion, checked here with WebCrypto (RFC 9162 §2.1.3.2) against the root hash of
  // the signed checkpoint note: this server's arithmetic is not trusted.
  function b64(s) { return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }); }
  function sha256(parts) {
    var len = parts.reduce(function (n, p) { return n + p.length; }, 0);
    var buf = new Uint8Array(len), at = 0;
    parts.forEach(function (p) { buf.set(p, at); at += p.length; });
    return crypto.subtle.digest('SHA-256', buf).then(function (d) { return new Uint8Array(d); });
  }
  function same(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  function verifyInclusion(p) {
    var lines = p.checkpoint.split('\n');
    var size = Number(lines[1]), root = b64(lines[2]);
    if (size !== p.tree_size) return Promise.resolve(false);
    return sha256([new Uint8Array([0]), b64(p.entry)]).then(function (leaf) {
      var fn = p.index, sn = p.tree_size - 1, r = leaf, i = 0;
      function step() {
        if (i === p.hashes.length) return sn === 0 && same(r, root);
        if (sn === 0) return false;
        var h = b64(p.hashes[i++]);
        var next;
        if ((fn & 1) === 1 || fn === sn) {
          next = sha256([new Uint8Array([1]), h, r]).then(function (x) {
            r = x;
            if ((fn & 1) === 0) { while ((fn & 1) === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
          });
        } else {
          next = sha256([new Uint8Array([1]), r, h]).then(function (x) { r = x; });
        }
        return next.then(function () { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); return step(); });
      }
      return step();
    });
  }
  window.countersignVerifyInclusion = verifyInclusion;

  function auditButtons() {
    document.querySelectorAll('button.verify').forEach(function (b) {
      b.addEventListener('click', function () {
        var out = document.getElementById('verified-' + b.dataset.index);
        out.textContent = 'checking…';
        fetch('/console/audit/proof?index=' + encodeURIComponent(b.dataset.index), { credentials: 'same-origin' })
          .then(function (r) { return r.json(); })
          .then(function (p) {
            if (p.error) { out.textContent = p.error; return; }
            return verifyInclusion(p).then(function (ok) {
              out.textContent = ok ? 'included in checkpoint of ' + p.tree_size : 'NOT VERIFIED';
              out.className = 'verdict-out ' + (ok ? 'verified' : 'failed');
            });
          })
          .catch(function (e) { out.textContent = 'failed: ' + e; });
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () { live(); jsonEditors(); auditButtons(); });
})();
