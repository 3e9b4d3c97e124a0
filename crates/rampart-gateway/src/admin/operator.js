"use strict";
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var out = function (s) { $("out").textContent = s; };
  var b64u = function (buf) {
    var s = "", b = new Uint8Array(buf);
    for (var i = 0; i < b.length; i++) { s += String.fromCharCode(b[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  var unb64u = function (s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s), b = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { b[i] = bin.charCodeAt(i); }
    return b.buffer;
  };
  var post = async function (path, body, session) {
    var h = { "Content-Type": "application/json", "X-Rampart-CSRF": "1" };
    if (session) { h.Authorization = "Bearer " + session; }
    var r = await fetch(path, { method: "POST", headers: h, body: JSON.stringify(body), credentials: "same-origin" });
    var j = await r.json().catch(function () { return {}; });
    if (!r.ok) { throw new Error((j.code || r.status) + ": " + (j.detail || j.title || "")); }
    return j;
  };
  var ids = function (list) {
    return (list || []).map(function (c) { return { type: c.type, id: unb64u(c.id) }; });
  };
  $("reg").onclick = async function () {
    try {
      var start = await post("/v1/operators/register/start", { operator: $("reg-name").value, token: $("reg-token").value });
      var pk = start.publicKey;
      pk.challenge = unb64u(pk.challenge);
      pk.user.id = unb64u(pk.user.id);
      pk.excludeCredentials = ids(pk.excludeCredentials);
      var c = await navigator.credentials.create({ publicKey: pk });
      var done = await post("/v1/operators/register/finish", {
        ceremony: start.ceremony,
        credential: {
          id: c.id, rawId: b64u(c.rawId), type: c.type,
          response: { clientDataJSON: b64u(c.response.clientDataJSON), attestationObject: b64u(c.response.attestationObject) }
        }
      });
      $("reg-token").value = "";
      out("registered a credential for " + done.operator + "; sign in below");
    } catch (e) { out("registration failed: " + e.message); }
  };
  $("login").onclick = async function () {
    try {
      var start = await post("/v1/operators/login/start", { operator: $("login-name").value });
      var pk = start.publicKey;
      pk.challenge = unb64u(pk.challenge);
      pk.allowCredentials = ids(pk.allowCredentials);
      var a = await navigator.credentials.get({ publicKey: pk });
      var r = a.response;
      var done = await post("/v1/operators/login/finish", {
        ceremony: start.ceremony,
        credential: {
          id: a.id, rawId: b64u(a.rawId), type: a.type,
          response: {
            clientDataJSON: b64u(r.clientDataJSON), authenticatorData: b64u(r.authenticatorData),
            signature: b64u(r.signature), userHandle: r.userHandle ? b64u(r.userHandle) : null
          }
        }
      });
      $("session").textContent = done.session;
      out("signed in as " + done.operator + " until " + new Date(done.expires_ms).toISOString() + " (extended by use)");
    } catch (e) { out("sign-in failed: " + e.message); }
  };
  $("logout").onclick = async function () {
    try {
      await post("/v1/operators/logout", {});
      $("session").textContent = "–";
      out("signed out");
    } catch (e) { out("sign-out failed: " + e.message); }
  };
})();
