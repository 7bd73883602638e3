// tuco console: plain JavaScript, no build step. Every key and value reaches the page through textContent
// (never innerHTML), so a hostile key is shown as text. The token lives in sessionStorage (this tab only) and
// travels in the Authorization header; it is never put in an address or logged.
"use strict";

(function () {
  const TOKEN = "tuco.token";
  const PAGE_SIZE = 200;
  const LIVE_SHOWN = 50;
  const MAX_SHOWN_BYTES = 1 << 20; // a larger value is shown cut, with a note

  const state = {
    token: sessionStorage.getItem(TOKEN),
    authNeeded: false,
    prefix: "",
    tokens: [null], // page tokens of the pages seen: tokens[i] opens page i
    page: 0,
    nextToken: null,
    shown: new Map(), // key or folder -> its <li>
    open: null, // the key shown: {key, item, bytes, mode}
    watch: null, // AbortController of the live watch
    watchRevision: 0,
    // The history view's hook (issue 24): once GET /v1/history/{key} exists, set this to a function(key) that
    // renders the key's revisions and who made them into #detail; renderView shows a History button when it is set.
    historyHook: null,
    mine: new Set(), // revisions this tab wrote: their watch events are no news
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value === null || value === undefined ? "" : String(value);
      else if (value === null || value === undefined || value === false) continue;
      else if (name === "onclick") node.addEventListener("click", value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // -- the API -----------------------------------------------------------------------------------

  function headers(extra) {
    const all = Object.assign({}, extra || {});
    if (state.token) all.Authorization = "Bearer " + state.token;
    return all;
  }

  function keyPath(key) {
    return "/v1/key/" + encodeURIComponent(key);
  }

  async function api(method, path, options) {
    const opts = options || {};
    const response = await fetch(path, {
      method: method,
      headers: headers(opts.headers),
      body: opts.body,
      cache: "no-store",
      credentials: "same-origin",
      signal: opts.signal,
    });
    if (response.status === 401 && state.authNeeded !== null && !opts.probe) {
      signedOut("The server no longer accepts the token: sign in again.");
    }
    return response;
  }

  async function problem(response) {
    try {
      const body = await response.json();
      return (body.error ? body.error + ": " : "") + (body.message || response.statusText);
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  function bytesOf(base64) {
    const text = atob(base64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  function textOf(bytes) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (e) {
      return null;
    }
  }

  function looksBinary(text) {
    return text === null || /[\u0000-\u0008\u000e-\u001f\u007f]/.test(text);
  }

  function hexOf(bytes) {
    const lines = [];
    const shown = Math.min(bytes.length, MAX_SHOWN_BYTES);
    for (let at = 0; at < shown; at += 16) {
      const row = bytes.slice(at, Math.min(at + 16, shown));
      const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(at.toString(16).padStart(8, "0") + "  " + hex.padEnd(47, " ") + "  " + ascii);
    }
    return lines.join("\n");
  }

  // -- pages and sign-in -------------------------------------------------------------------------

  function show(page) {
    for (const id of ["signin-page", "keys-page", "status-page"]) $(id).hidden = id !== page;
    $("loading").hidden = true;
    for (const [link, target] of [["nav-keys", "keys-page"], ["nav-status", "status-page"]]) {
      if (page === target) $(link).setAttribute("aria-current", "page");
      else $(link).removeAttribute("aria-current");
    }
  }

  function signedOut(message) {
    state.token = null;
    sessionStorage.removeItem(TOKEN);
    stopWatch();
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("signin-error").textContent = message || "";
    show("signin-page");
    $("token").focus();
  }

  // 200: open (or the token reads everything); 403: a valid token that may not list every key; 401: sign in.
  async function probe() {
    const response = await api("GET", "/v1/keys?limit=1&keys_only=true", { probe: true });
    return response.status;
  }

  async function start() {
    let status;
    try {
      status = await probe();
    } catch (e) {
      $("loading").textContent = "The server cannot be reached: " + e.message;
      return;
    }
    if (status === 401) {
      state.authNeeded = true;
      if (state.token) {
        signedOut("The server does not accept the saved token: sign in again.");
      } else {
        signedOut("");
      }
      return;
    }
    state.authNeeded = state.token !== null;
    signedIn();
  }

  function signedIn() {
    $("sign-out").hidden = !state.token;
    $("who").textContent = state.token ? "Signed in with a token" : "Authentication is off";
    route();
  }

  async function signIn(event) {
    event.preventDefault();
    const token = $("token").value.trim();
    $("signin-error").textContent = "";
    if (!token) return;
    state.token = token;
    let status;
    try {
      status = await probe();
    } catch (e) {
      state.token = null;
      $("signin-error").textContent = "The server cannot be reached: " + e.message;
      return;
    }
    if (status === 401) {
      state.token = null;
      $("signin-error").textContent = "The server refused this token.";
      $("token").select();
      return;
    }
    sessionStorage.setItem(TOKEN, token);
    $("token").value = "";
    state.authNeeded = true;
    signedIn();
  }

  function route() {
    if (state.authNeeded && !state.token) return;
    if (location.hash === "#status") {
      stopWatch();
      show("status-page");
      loadStatus();
    } else {
      show("keys-page");
      if (!state.shown.size && !$("tree").childElementCount) openPrefix(state.prefix);
      else startWatch();
    }
  }

  // -- the tree ------------------------------------------------------------------------------------

  function renderCrumbs() {
    const crumbs = $("crumbs");
    crumbs.replaceChildren();
    crumbs.append(el("button", { type: "button", text: "(all keys)", onclick: () => openPrefix("") }));
    let at = 0;
    const prefix = state.prefix;
    while (at < prefix.length) {
      const slash = prefix.indexOf("/", at);
      const end = slash === -1 ? prefix.length : slash + 1;
      const part = prefix.slice(0, end);
      crumbs.append(el("span", { className: "sep", "aria-hidden": "true", text: "›" }));
      crumbs.append(el("button", { type: "button", text: prefix.slice(at, end), onclick: () => openPrefix(part) }));
      at = end;
    }
  }

  async function openPrefix(prefix) {
    state.prefix = prefix;
    state.tokens = [null];
    state.page = 0;
    $("prefix").value = prefix;
    renderCrumbs();
    await loadPage();
    startWatch();
  }

  async function loadPage() {
    const token = state.tokens[state.page];
    let path = "/v1/keys?keys_only=true&limit=" + PAGE_SIZE + "&prefix=" + encodeURIComponent(state.prefix);
    if (token) path += "&page_token=" + encodeURIComponent(token);
    $("list-status").textContent = "Loading…";
    let response;
    try {
      response = await api("GET", path);
    } catch (e) {
      $("list-status").textContent = "The server cannot be reached: " + e.message;
      return;
    }
    if (!response.ok) {
      $("tree").replaceChildren();
      state.shown.clear();
      $("list-status").textContent =
        response.status === 403
          ? "This token may not list the keys under this prefix. Type a prefix it may read."
          : "Cannot list the keys: " + (await problem(response));
      $("next-page").disabled = true;
      $("prev-page").disabled = state.page === 0;
      $("list-status").dataset.prefix = state.prefix;
      return;
    }
    const body = await response.json();
    state.nextToken = body.next_page_token;
    renderTree(body.items);
    const count = body.items.length;
    $("list-status").textContent =
      count === 0
        ? "No keys under this prefix."
        : count + (count === 1 ? " key" : " keys") + " on this page, at revision " + body.revision + ".";
    $("page-number").textContent = "Page " + (state.page + 1);
    $("prev-page").disabled = state.page === 0;
    $("next-page").disabled = !state.nextToken;
    $("list-status").dataset.prefix = state.prefix;
  }

  function renderTree(items) {
    const tree = $("tree");
    tree.replaceChildren();
    state.shown.clear();
    const prefix = state.prefix;
    for (const item of items) {
      const rest = item.key.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (slash !== -1 && slash < rest.length - 1) {
        const folder = prefix + rest.slice(0, slash + 1);
        const existing = state.shown.get(folder);
        if (existing) {
          existing.count += 1;
          existing.counter.textContent = existing.count + (existing.count === 1 ? " key" : " keys");
          continue;
        }
        const counter = el("span", { className: "count", text: "1 key" });
        const li = el(
          "li",
          { "data-folder": folder },
          el(
            "button",
            { type: "button", onclick: () => openPrefix(folder) },
            el("span", { className: "kind", text: "folder" }),
            " ",
            el("span", { className: "name", text: rest.slice(0, slash + 1) }),
            " ",
            counter,
          ),
        );
        state.shown.set(folder, { li: li, count: 1, counter: counter });
        tree.append(li);
      } else {
        tree.append(keyItem(item.key));
      }
    }
  }

  function keyItem(key) {
    const shownName = key.slice(state.prefix.length) || key;
    const button = el(
      "button",
      { type: "button", onclick: () => openKey(key) },
      el("span", { className: "kind", text: "key" }),
      " ",
      el("span", { className: "name", text: shownName }),
    );
    if (state.open && state.open.key === key) button.setAttribute("aria-current", "true");
    const li = el("li", { "data-key": key }, button);
    state.shown.set(key, { li: li, count: 0, counter: null });
    return li;
  }

  function markCurrent(key) {
    for (const button of $("tree").querySelectorAll("button[aria-current]")) button.removeAttribute("aria-current");
    const entry = state.shown.get(key);
    if (entry) entry.li.querySelector("button").setAttribute("aria-current", "true");
  }

  // -- one key -------------------------------------------------------------------------------------

  // A key's value and revisions: the listing of the key itself as a prefix, whose first item is the key if it exists.
  async function fetchKey(key) {
    const response = await api("GET", "/v1/keys?limit=1&prefix=" + encodeURIComponent(key));
    if (!response.ok) return { error: await problem(response), status: response.status };
    const body = await response.json();
    const item = body.items[0];
    if (!item || item.key !== key) return { item: null, revision: body.revision };
    return { item: item, bytes: bytesOf(item.value), revision: body.revision };
  }

  function bestMode(bytes) {
    const text = textOf(bytes);
    if (looksBinary(text)) return "hex";
    try {
      JSON.parse(text);
      return /^\s*[[{]/.test(text) ? "json" : "text";
    } catch (e) {
      return "text";
    }
  }

  function rendered(bytes, mode) {
    if (mode === "hex") return hexOf(bytes);
    const text = textOf(bytes.length > MAX_SHOWN_BYTES ? bytes.slice(0, MAX_SHOWN_BYTES) : bytes);
    if (text === null) return "(not valid UTF-8: shown as hex)\n" + hexOf(bytes);
    if (mode === "json") {
      try {
        return JSON.stringify(JSON.parse(text), null, 2);
      } catch (e) {
        return "(not JSON: shown as text)\n" + text;
      }
    }
    return text;
  }

  function sizeText(size) {
    if (size < 1024) return size + (size === 1 ? " byte" : " bytes");
    if (size < 1 << 20) return (size / 1024).toFixed(1) + " KiB (" + size + " bytes)";
    return (size / (1 << 20)).toFixed(1) + " MiB (" + size + " bytes)";
  }

  function ttlText(item) {
    if (!item.expires_at) return "none";
    const left = Math.max(0, Math.round(item.expires_at - Date.now() / 1000));
    return "expires in " + left + " s (at " + new Date(item.expires_at * 1000).toISOString() + ")";
  }

  async function openKey(key) {
    markCurrent(key);
    const detail = $("detail");
    detail.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
    const found = await fetchKey(key);
    if (found.error) {
      detail.replaceChildren(el("p", { className: "error", role: "alert", text: "Cannot read the key: " + found.error }));
      return;
    }
    if (!found.item) {
      state.open = null;
      detail.replaceChildren(
        el("h2", { text: key }),
        el("p", { className: "notice", text: "This key does not exist (any more)." }),
      );
      return;
    }
    state.open = { key: key, item: found.item, bytes: found.bytes, mode: bestMode(found.bytes) };
    renderView();
  }

  function mode(name) {
    $("detail").dataset.mode = name;
  }

  function renderView(notice) {
    mode("view");
    const open = state.open;
    const item = open.item;
    const detail = $("detail");
    const value = el("pre", { className: "value", id: "value", tabindex: "0", "aria-label": "Value" });
    value.textContent = rendered(open.bytes, open.mode);
    const modes = el("div", { className: "modes", role: "group", "aria-label": "Show the value as" });
    for (const [mode, label] of [["text", "Text"], ["json", "JSON"], ["hex", "Hex"]]) {
      modes.append(
        el("button", {
          type: "button",
          "aria-pressed": String(open.mode === mode),
          text: label,
          onclick: () => {
            open.mode = mode;
            renderView();
          },
        }),
      );
    }
    detail.replaceChildren(
      el("h2", { id: "key-name", text: open.key }),
      notice || "",
      el(
        "dl",
        { className: "meta" },
        el("dt", { text: "Size" }),
        el("dd", { id: "meta-size", text: sizeText(open.bytes.length) }),
        el("dt", { text: "Modified at revision" }),
        el("dd", { id: "meta-mod", text: item.mod_revision }),
        el("dt", { text: "Created at revision" }),
        el("dd", { text: item.create_revision }),
        el("dt", { text: "Version" }),
        el("dd", { text: item.version }),
        el("dt", { text: "TTL (its own or its lease's)" }),
        el("dd", { id: "meta-ttl", text: ttlText(item) }),
      ),
      modes,
      value,
      el(
        "div",
        { className: "actions" },
        el("button", { type: "button", className: "primary", text: "Edit", onclick: () => renderEdit(null) }),
        el("button", { type: "button", className: "danger", text: "Delete", onclick: renderDeleteConfirm }),
        el("button", { type: "button", text: "Reload", onclick: () => openKey(open.key) }),
        state.historyHook
          ? el("button", { type: "button", text: "History", onclick: () => state.historyHook(open.key) })
          : null,
      ),
      open.bytes.length > MAX_SHOWN_BYTES
        ? el("p", { className: "muted", text: "Only the first MiB is shown." })
        : "",
    );
  }

  function renderEdit(mine) {
    const open = state.open;
    const text = mine !== null ? mine : textOf(open.bytes);
    const detail = $("detail");
    if (text === null) {
      detail.prepend(el("p", { className: "notice bad", role: "alert", text: "A binary value cannot be edited here." }));
      return;
    }
    mode("edit");
    const area = el("textarea", { id: "editor", spellcheck: "false" });
    area.value = text;
    const status = el("p", { id: "edit-status", role: "alert", className: "error" });
    detail.replaceChildren(
      el("h2", { text: open.key }),
      el("p", { className: "muted", text: "Editing the value of revision " + open.item.mod_revision + "." }),
      el("div", { className: "field" }, el("label", { for: "editor", text: "Value" }), area),
      saveOrCancel(
        "Save",
        () => save(area.value, '"' + open.item.mod_revision + '"', status),
        () => renderView(),
      ),
      status,
    );
    area.focus();
  }

  async function save(text, ifMatch, status) {
    const open = state.open;
    const response = await api("PUT", keyPath(open.key), { body: text, headers: { "If-Match": ifMatch } });
    noteMine(response);
    if (response.status === 201) {
      await openKey(open.key);
      announce("Saved " + open.key + ".");
      return;
    }
    if (response.status === 412) {
      await renderConflict(text);
      return;
    }
    status.textContent = "Not saved: " + (await problem(response));
  }

  // Someone else changed the key since it was opened: their value beside ours, and the user decides.
  async function renderConflict(mine) {
    const open = state.open;
    const found = await fetchKey(open.key);
    mode("conflict");
    const detail = $("detail");
    const yours = el("pre", { className: "value", id: "conflict-mine", tabindex: "0" });
    yours.textContent = mine;
    const theirs = el("pre", { className: "value", id: "conflict-theirs", tabindex: "0" });
    const status = el("p", { id: "edit-status", role: "alert", className: "error" });
    const actions = el("div", { className: "actions" });
    if (found.item) {
      theirs.textContent = rendered(found.bytes, bestMode(found.bytes));
      actions.append(
        el("button", {
          type: "button",
          className: "primary",
          text: "Save mine over theirs",
          onclick: () => save(mine, '"' + found.item.mod_revision + '"', status),
        }),
        el("button", {
          type: "button",
          text: "Keep theirs",
          onclick: () => {
            state.open = { key: open.key, item: found.item, bytes: found.bytes, mode: bestMode(found.bytes) };
            renderView();
          },
        }),
        el("button", {
          type: "button",
          text: "Edit mine again",
          onclick: () => {
            state.open = { key: open.key, item: found.item, bytes: found.bytes, mode: open.mode };
            renderEdit(mine);
          },
        }),
      );
    } else {
      theirs.textContent = "(the key was deleted)";
      actions.append(
        el("button", {
          type: "button",
          className: "primary",
          text: "Create it with mine",
          onclick: () => create(open.key, mine, status),
        }),
        el("button", { type: "button", text: "Discard mine", onclick: () => openKey(open.key) }),
      );
    }
    const revision = found.item ? "revision " + found.item.mod_revision : "deleted";
    detail.replaceChildren(
      el("h2", { text: open.key }),
      el("p", {
        className: "notice bad",
        role: "alert",
        id: "conflict-notice",
        text: "Not saved: someone changed this key since you opened it (" + revision + "). Choose which value to keep.",
      }),
      el(
        "div",
        { className: "conflict" },
        el("div", {}, el("h3", { text: "Theirs, on the server (" + revision + ")" }), theirs),
        el("div", {}, el("h3", { text: "Yours, not saved" }), yours),
      ),
      actions,
      status,
    );
    actions.querySelector("button").focus();
  }

  function renderDeleteConfirm() {
    const open = state.open;
    const status = el("p", { id: "edit-status", role: "alert", className: "error" });
    const confirm = el("button", {
      type: "button",
      className: "danger primary",
      text: "Delete it",
      onclick: () => remove('"' + open.item.mod_revision + '"', status),
    });
    renderView(
      el(
        "div",
        { className: "notice", role: "alert" },
        el("p", { text: "Delete this key (revision " + open.item.mod_revision + ")?" }),
        el(
          "div",
          { className: "actions" },
          confirm,
          el("button", { type: "button", text: "Keep it", onclick: () => renderView() }),
        ),
        status,
      ),
    );
    mode("confirm");
    confirm.focus();
  }

  async function remove(ifMatch, status) {
    const open = state.open;
    const response = await api("DELETE", keyPath(open.key), { headers: { "If-Match": ifMatch } });
    noteMine(response);
    if (response.status === 200) {
      state.open = null;
      $("detail").replaceChildren(el("p", { className: "ok", role: "status", text: "Deleted " + open.key + "." }));
      markGone(open.key);
      return;
    }
    if (response.status === 412) {
      const found = await fetchKey(open.key);
      if (!found.item) {
        state.open = null;
        $("detail").replaceChildren(el("p", { className: "notice", text: "Someone else deleted it already." }));
        return;
      }
      state.open = { key: open.key, item: found.item, bytes: found.bytes, mode: bestMode(found.bytes) };
      const again = el("p", { id: "edit-status", role: "alert", className: "error" });
      renderView(
        el(
          "div",
          { className: "notice bad", role: "alert", id: "conflict-notice" },
          el("p", {
            text: "Not deleted: someone changed this key (now revision " + found.item.mod_revision + "). Its value is below.",
          }),
          el(
            "div",
            { className: "actions" },
            el("button", {
              type: "button",
              className: "danger primary",
              text: "Delete it anyway",
              onclick: () => remove('"' + found.item.mod_revision + '"', again),
            }),
            el("button", { type: "button", text: "Keep it", onclick: () => renderView() }),
          ),
          again,
        ),
      );
      mode("confirm");
      return;
    }
    status.textContent = "Not deleted: " + (await problem(response));
  }

  // The primary action of a form (Save, Create) and its Cancel.
  function saveOrCancel(label, onSave, onCancel) {
    return el(
      "div",
      { className: "actions" },
      el("button", { type: "button", className: "primary", text: label, onclick: onSave }),
      el("button", { type: "button", text: "Cancel", onclick: onCancel }),
    );
  }

  function renderNew() {
    markCurrent(null);
    const name = el("input", { id: "new-name", type: "text", spellcheck: "false", autocomplete: "off" });
    name.value = state.prefix;
    const area = el("textarea", { id: "new-value", spellcheck: "false" });
    const status = el("p", { id: "edit-status", role: "alert", className: "error" });
    $("detail").replaceChildren(
      el("h2", { text: "New key" }),
      el("div", { className: "field" }, el("label", { for: "new-name", text: "Key" }), name),
      el("div", { className: "field" }, el("label", { for: "new-value", text: "Value" }), area),
      saveOrCancel(
        "Create",
        () => create(name.value, area.value, status),
        () => $("detail").replaceChildren(),
      ),
      status,
    );
    mode("new");
    name.focus();
  }

  async function create(key, text, status) {
    if (!key) {
      status.textContent = "A key needs a name.";
      return;
    }
    const response = await api("PUT", keyPath(key), { body: text, headers: { "If-None-Match": "*" } });
    noteMine(response);
    if (response.status === 201) {
      await openKey(key);
      announce("Created " + key + ".");
      return;
    }
    status.textContent =
      response.status === 412
        ? "Not created: a key of that name exists already (open it to edit it)."
        : "Not created: " + (await problem(response));
  }

  function noteMine(response) {
    const revision = Number(response.headers.get("X-Tuco-Revision"));
    if (response.ok && revision) state.mine.add(revision);
  }

  function announce(text) {
    const detail = $("detail");
    detail.prepend(el("p", { className: "ok", role: "status", id: "announce", text: text }));
  }

  function markGone(key) {
    const entry = state.shown.get(key);
    if (entry) {
      entry.li.classList.add("gone");
      entry.li.classList.remove("fresh");
    }
  }

  // -- live changes: a fetch stream of /v1/watch (EventSource cannot send the Authorization header) --

  function stopWatch() {
    if (state.watch) state.watch.abort();
    state.watch = null;
  }

  function startWatch() {
    stopWatch();
    const controller = new AbortController();
    state.watch = controller;
    state.watchRevision = 0;
    $("live").replaceChildren();
    runWatch(controller, state.prefix);
  }

  async function runWatch(controller, prefix) {
    const label = prefix ? "“" + prefix + "”" : "all keys";
    while (!controller.signal.aborted) {
      let path = "/v1/watch?prefix=" + encodeURIComponent(prefix);
      if (state.watchRevision) path += "&start_revision=" + (state.watchRevision + 1);
      try {
        const response = await api("GET", path, { signal: controller.signal });
        if (!response.ok) {
          $("live-state").textContent = "No live changes: " + (await problem(response));
          return;
        }
        $("live-state").textContent = "Watching " + label + " live.";
        await readStream(response.body.getReader(), controller);
      } catch (e) {
        if (controller.signal.aborted) return;
        $("live-state").textContent = "Live changes interrupted; reconnecting…";
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async function readStream(reader, controller) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || controller.signal.aborted) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        onFrame(frame);
      }
    }
  }

  function onFrame(frame) {
    let type = "message";
    let data = "";
    for (const line of frame.split("\n")) {
      if (line.startsWith("event: ")) type = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (type !== "put" && type !== "delete") {
      if (type === "progress" && data) state.watchRevision = Math.max(state.watchRevision, JSON.parse(data).revision);
      return;
    }
    const change = JSON.parse(data);
    state.watchRevision = Math.max(state.watchRevision, change.revision);
    const live = $("live");
    live.prepend(el("li", { text: type + " " + change.key + " at revision " + change.revision }));
    while (live.childElementCount > LIVE_SHOWN) live.lastElementChild.remove();
    if (type === "put") {
      const entry = state.shown.get(change.key);
      if (entry) {
        entry.li.classList.remove("gone");
      } else if (!change.key.slice(state.prefix.length).includes("/")) {
        const li = keyItem(change.key);
        li.classList.add("fresh");
        $("tree").prepend(li);
      }
    } else {
      markGone(change.key);
    }
    const open = state.open;
    const news = !state.mine.has(change.revision) && $("detail").dataset.mode === "view";
    if (news && open && open.key === change.key && change.revision > open.item.mod_revision) {
      const what = type === "put" ? "changed" : "was deleted";
      renderView(
        el(
          "div",
          { className: "notice", id: "changed-notice", role: "status" },
          "This key " + what + " on the server at revision " + change.revision + ". ",
          el("button", { type: "button", text: "Show the new value", onclick: () => openKey(open.key) }),
        ),
      );
    }
  }

  // -- status ---------------------------------------------------------------------------------------

  function parseMetrics(text) {
    const values = new Map();
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (match && !match[1].endsWith("_bucket")) values.set(match[1] + (match[2] || ""), Number(match[3]));
    }
    return values;
  }

  function card(label, value) {
    return el(
      "div",
      { className: "card" },
      el("div", { className: "label", text: label }),
      el("div", { className: "number", text: value === undefined ? "—" : value }),
    );
  }

  async function loadStatus() {
    const body = $("status-body");
    body.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
    const parts = [];
    const ready = await api("GET", "/readyz");
    let readiness = {};
    try {
      readiness = await ready.json();
    } catch (e) {
      readiness = {};
    }
    const log = readiness.log || {};
    let metrics = null;
    const answer = await api("GET", "/metrics");
    if (answer.ok) metrics = parseMetrics(await answer.text());
    const metric = (name) => (metrics && metrics.has(name) ? metrics.get(name) : undefined);
    parts.push(
      el(
        "p",
        { id: "readiness", className: readiness.ready ? "ok" : "error" },
        readiness.ready ? "Ready" : "Not ready" + (readiness.message ? ": " + readiness.message : ""),
        readiness.phase ? " (phase: " + readiness.phase + ")" : "",
      ),
    );
    parts.push(
      el(
        "div",
        { className: "cards" },
        card("Revision", log.last_sequence !== undefined ? log.last_sequence : metric("tuco_last_sequence")),
        card("Keys", metric("tuco_keys")),
        card("Watchers", metric("tuco_watchers")),
        card("Store bytes", metric("tuco_store_bytes")),
        card("Replica lag (events)", log.lag_events !== undefined ? log.lag_events : metric("tuco_replication_lag_events")),
        card("Open connections", metric("tuco_http_connections_open")),
      ),
    );
    const rows = el("tbody");
    for (const [name, value] of Object.entries(log)) {
      rows.append(el("tr", {}, el("th", { scope: "row", text: "log " + name }), el("td", { className: "num", text: value })));
    }
    if (readiness.store) {
      for (const [name, value] of Object.entries(readiness.store)) {
        rows.append(el("tr", {}, el("th", { scope: "row", text: "store " + name }), el("td", { className: "num", text: value })));
      }
    }
    parts.push(
      el("h2", { text: "Readiness details" }),
      rows.childElementCount
        ? el("table", { className: "metrics" }, el("thead", {}, el("tr", {}, el("th", { text: "Field" }), el("th", { text: "Value" }))), rows)
        : el("p", { className: "muted", text: "This token may not see the details (they need read on every key)." }),
    );
    parts.push(el("h2", { text: "Metrics" }));
    if (metrics) {
      const table = el("tbody");
      for (const [name, value] of metrics) {
        if (name.startsWith("tuco_")) {
          table.append(el("tr", {}, el("th", { scope: "row", className: "mono", text: name }), el("td", { className: "num", text: value })));
        }
      }
      parts.push(el("table", { className: "metrics", id: "metrics" }, el("thead", {}, el("tr", {}, el("th", { text: "Metric" }), el("th", { text: "Value" }))), table));
    } else {
      parts.push(el("p", { className: "muted", text: "Metrics are off, or this token may not read them (" + answer.status + ")." }));
    }
    body.replaceChildren(...parts);
  }

  // -- wiring ---------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signedOut("Signed out."));
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      openPrefix($("prefix").value);
    });
    $("next-page").addEventListener("click", async () => {
      if (!state.nextToken) return;
      state.tokens[state.page + 1] = state.nextToken;
      state.page += 1;
      await loadPage();
    });
    $("prev-page").addEventListener("click", async () => {
      if (state.page === 0) return;
      state.page -= 1;
      await loadPage();
    });
    $("new-key").addEventListener("click", renderNew);
    $("status-refresh").addEventListener("click", loadStatus);
    window.addEventListener("hashchange", route);
    start();
  });
})();
