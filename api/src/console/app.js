// The Quorate console: plain ES modules, no framework, no build step.
// Everything it shows comes from the local API with the signed-in token,
// which lives in this module's memory only (no cookie, no storage), so no
// other site can make the browser send it (no CSRF), and reloading signs
// out. Every value from the API goes into the page as text, never as HTML.

const session = { token: null, principal: null, roles: new Set(), live: null, sso: null };

// The roles that open each page's routes (api/src/local/access.rs).
const PAGES = [
  ["overview", "Overview", ["approver", "publisher", "reader", "auditor"]],
  ["proposals", "Proposals", ["approver", "publisher", "reader", "auditor"]],
  ["grants", "Grants", ["approver", "publisher", "reader", "auditor"]],
  ["data", "Data", ["publisher", "reader"]],
  ["catalog", "Catalog", ["approver", "publisher", "reader", "auditor"]],
  ["access", "Access requests", ["approver", "publisher", "reader", "auditor"]],
  ["audit", "Audit", ["auditor"]],
  ["ledger", "Ledger", ["approver", "publisher", "reader", "auditor"]],
];

const can = (roles) => session.roles.has("admin") || roles.some((r) => session.roles.has(r));
const $ = (id) => document.getElementById(id);

/** An element with attributes (`on*` are listeners) and children (text or nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value !== undefined && value !== null) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function table(headings, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: headings.length, class: "muted" }, "nothing here"))]));
}

const short = (hex) => (hex ? hex.slice(0, 12) + "…" : "");
// A time as UTC; one outside what a Date holds (a member may propose any
// number) is shown as the number it is rather than breaking the page.
const time = (ms) => {
  if (!ms) return "";
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
};

/** The local API path of an object, each segment encoded; `.` and `..` are refused. */
function objectPath(prefix, path) {
  const segments = String(path).split("/");
  if (segments.some((s) => s === "" || s === "." || s === "..")) throw new Error(`${JSON.stringify(path)} is not a resource path`);
  return `${prefix}/${segments.map(encodeURIComponent).join("/")}`;
}

class ApiError extends Error {}

/** A call of the local API; a refusal becomes an ApiError with its problem's detail. */
async function api(method, path, body, contentType) {
  const headers = { Authorization: `Bearer ${session.token}` };
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    headers["Content-Type"] = contentType || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, { method, headers, body: payload });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const problem = await response.json();
      detail = `${problem.detail} (${problem.type.replace("urn:quorate:problem:", "")}, ${response.status})`;
    } catch (_) { /* not a problem body */ }
    throw new ApiError(detail);
  }
  return response;
}
const json = async (path) => (await api("GET", path)).json();

function showError(error) {
  const box = $("error");
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
}

/** Saves a response body as a file. */
async function download(path, name) {
  const blob = await (await api("GET", path)).blob();
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/** A button that runs `action`, then re-renders the page; errors are shown. */
function act(label, action, cls = "") {
  return el("button", {
    type: "button", class: cls, "data-action": label.toLowerCase(),
    onclick: async (event) => {
      event.target.disabled = true;
      try { await action(); await render(); } catch (e) { showError(e); event.target.disabled = false; }
    },
  }, label);
}

function summary(body) {
  switch (body.kind) {
    case "grant": return `${body.grantor} grants ${body.grantee} ${body.actions.join(", ")} on ${body.resources.join(", ")} until ${time(body.not_after_ms)}${body.purpose ? ` (${body.purpose})` : ""}`;
    case "revoke": return `revoke grant ${short(body.grant)}`;
    case "add-member": return `admit ${body.name} (${body.did})`;
    case "remove-member": return `remove ${body.member}; its grants end`;
    case "rotate-key": return `${body.member} moves to ${body.new_did}`;
    default: return body.kind;
  }
}

const views = {
  async overview() {
    const [me, status, members, ledger] = await Promise.all([
      json("/v1/identity"), json("/v1/status"), json("/v1/members"), json("/v1/ledger"),
    ]);
    const heights = [];
    for (let h = ledger.height; h >= 0 && h > ledger.height - 8; h--) heights.push(h);
    const blocks = await Promise.all(heights.map((h) => json(`/v1/ledger/blocks/${h}`)));
    const ready = status.last_commit_age_ms !== null && status.last_commit_age_ms !== undefined;
    return [
      el("h1", {}, `${me.name}`, el("span", { class: "muted mono" }, `  ${me.did}`)),
      el("div", { class: "cards" },
        el("div", { class: "card" }, "Height", el("b", { id: "height" }, status.height)),
        el("div", { class: "card" }, "Peers connected", el("b", {}, status.peers)),
        el("div", { class: "card" }, "Members", el("b", {}, status.members)),
        el("div", { class: "card" }, "Pending proposals", el("b", {}, status.pending_proposals)),
        el("div", { class: "card" }, "Last commit", el("b", { class: ready ? "ok" : "bad" }, ready ? `${status.last_commit_age_ms} ms ago` : "none yet"))),
      el("h2", {}, "Members"),
      table(["Name", "DID", "This node"], members.members.map((m) =>
        el("tr", {}, el("td", {}, m.name), el("td", { class: "mono" }, m.did), el("td", {}, m.is_me ? "yes" : "")))),
      el("h2", {}, "Recent blocks"),
      table(["Height", "Time", "Proposer", "Entries", "Hash"], blocks.map((b) =>
        el("tr", {}, el("td", {}, b.height), el("td", {}, time(b.time_ms)), el("td", {}, b.proposer),
          el("td", {}, b.entries.length), el("td", { class: "mono" }, short(b.hash))))),
    ];
  },

  async proposals() {
    const [proposals, me] = await Promise.all([json("/v1/proposals"), json("/v1/identity")]);
    const decide = can(["approver"]);
    const isOpen = (p) => p.state === "pending" || p.state === "eligible";
    const rejections = (p) => p.rejections.map((r) => `${r.member}: ${r.reason}`).join("; ");
    const open = proposals.filter(isOpen);
    const closed = proposals.filter((p) => !isOpen(p)).sort((x, y) => y.created_at_ms - x.created_at_ms);
    return [
      el("h1", {}, "Proposals"),
      el("h2", {}, "Open"),
      table(["Id", "What it would change", "Proposer", "State", "Endorsed by", "Rejected by", "This node", ""], open.map((p) => {
        const state = p.state === "pending" ? `pending: ${p.endorsements} of ${p.required}` : p.state;
        const undecided = p.decision === "undecided";
        const reason = el("input", { name: "reason", placeholder: "reason for a rejection", maxlength: "256" });
        const mine = p.proposer === me.name;
        return el("tr", { "data-proposal": p.id },
          el("td", { class: "mono" }, short(p.id)), el("td", {}, summary(p.body)), el("td", {}, p.proposer),
          el("td", {}, state), el("td", {}, p.endorsers.join(", ")), el("td", {}, rejections(p)),
          el("td", { title: p.policy || "" }, p.decision + (p.policy && undecided ? " (asked)" : "")),
          el("td", {}, decide && undecided && !mine ? [
            act("Approve", () => api("POST", `/v1/proposals/${p.id}/approve`)), " ",
            reason, " ",
            act("Reject", () => api("POST", `/v1/proposals/${p.id}/reject`, reason.value ? { reason: reason.value } : undefined), "danger"),
          ] : decide && mine ? act("Withdraw", () => api("POST", `/v1/proposals/${p.id}/withdraw`), "danger") : null));
      })),
      el("h2", {}, "History"),
      table(["Id", "What it changed or would have", "Proposer", "Outcome", "Endorsed by", "Rejected by"], closed.map((p) => {
        const outcome = p.state === "committed" ? `committed at height ${p.height}` : p.state + (p.reason ? `: ${p.reason}` : "");
        return el("tr", { "data-proposal": p.id },
          el("td", { class: "mono" }, short(p.id)), el("td", {}, summary(p.body)), el("td", {}, p.proposer),
          el("td", { class: p.state === "committed" ? "ok" : "bad" }, outcome),
          el("td", {}, p.endorsers.join(", ")), el("td", {}, rejections(p)));
      })),
    ];
  },

  async grants() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const query = new URLSearchParams({ limit: "200" });
    for (const key of ["status", "grantee", "grantor"]) if (params.get(key)) query.set(key, params.get(key));
    const page = await json(`/v1/grants?${query}`);
    const grants = page.grants || page;
    const filter = el("form", { class: "inline", onsubmit: (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const next = new URLSearchParams();
      for (const [k, v] of form) if (v) next.set(k, v);
      location.hash = `#/grants?${next}`;
    } },
    el("select", { name: "status" }, ["", "active", "expired", "revoked", "ended", "not-yet-valid"].map((s) =>
      el("option", { value: s, selected: params.get("status") === s }, s || "any status"))),
    el("input", { name: "grantee", placeholder: "grantee", value: params.get("grantee") || "" }),
    el("input", { name: "grantor", placeholder: "grantor", value: params.get("grantor") || "" }),
    el("button", { type: "submit", class: "secondary" }, "Filter"));
    const revoke = can(["approver"]);
    return [
      el("h1", {}, "Grants"), filter,
      table(["Id", "Grantor → grantee", "Resources", "Actions", "Valid", "Standing", ""], grants.map((g) =>
        el("tr", { "data-grant": g.id },
          el("td", { class: "mono" }, short(g.id)), el("td", {}, `${g.grantor} → ${g.grantee}`),
          el("td", {}, g.resources.join(", ")), el("td", {}, g.actions.join(", ")),
          el("td", {}, `${time(g.not_before_ms)} – ${time(g.not_after_ms)}`),
          el("td", { class: g.standing === "active" ? "ok" : "bad" }, g.standing),
          el("td", {},
            act("Proof", () => download(`/v1/grants/${g.id}/proof`, `${g.id}.proof`), "secondary"), " ",
            act("Status proof", () => download(`/v1/grants/${g.id}/status`, `${g.id}.status`), "secondary"), " ",
            revoke && g.standing === "active" ? act("Revoke", () => api("POST", "/v1/proposals", { revoke: { grant: g.id } }), "danger") : null)))),
    ];
  },

  async data() {
    const [objects, members] = await Promise.all([json("/v1/objects?limit=200"), json("/v1/members")]);
    const publish = can(["publisher"]);
    const upload = el("form", { class: "inline", id: "upload", onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      const file = form.elements.file.files[0];
      const path = form.elements.path.value || (file && file.name);
      if (!file || !path) return;
      try {
        await api("PUT", objectPath("/v1/objects", path), file, file.type || "application/octet-stream");
        await render();
      } catch (e) { showError(e); }
    } }, el("input", { name: "path", placeholder: "path, e.g. reports/q1.csv" }), el("input", { name: "file", type: "file" }),
    el("button", { type: "submit" }, "Upload"));
    const peers = members.members.filter((m) => !m.is_me);
    const peerList = el("div", { id: "peer-objects" });
    const browse = el("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      const peer = event.target.elements.peer.value;
      try {
        const listing = await json(`/v1/peers/${encodeURIComponent(peer)}/objects?limit=200`);
        peerList.replaceChildren(table(["Path", "Size", ""], listing.objects.map((o) => el("tr", {},
          el("td", {}, o.path), el("td", {}, o.size),
          el("td", {}, act("Fetch", () => download(objectPath(`/v1/peers/${encodeURIComponent(peer)}/objects`, o.path), o.path.split("/").pop()), "secondary"))))));
      } catch (e) { peerList.replaceChildren(el("p", { class: "error" }, e.message)); }
    } }, el("select", { name: "peer" }, peers.map((m) => el("option", { value: m.name }, m.name))),
    el("button", { type: "submit", class: "secondary" }, "Browse what they grant us"));
    return [
      el("h1", {}, "Data"),
      publish ? upload : null,
      table(["Path", "Size", "Type", "Modified", ""], objects.objects.map((o) => el("tr", { "data-object": o.path },
        el("td", {}, o.path), el("td", {}, o.size), el("td", {}, o.content_type), el("td", {}, time(o.modified_ms)),
        el("td", {}, act("Download", () => download(objectPath("/v1/objects", o.path), o.path.split("/").pop()), "secondary"), " ",
          publish ? act("Delete", () => api("DELETE", objectPath("/v1/objects", o.path)), "danger") : null)))),
      el("h2", {}, "From other members"), browse, peerList,
    ];
  },

  async catalog() {
    const [offers, members] = await Promise.all([json("/v1/catalog/offers"), json("/v1/members")]);
    const publish = can(["publisher"]);
    const ask = can(["approver"]);
    const list = (xs) => (xs || []).join(", ");
    const offer = el("form", { class: "inline", id: "offer", onsubmit: async (event) => {
      event.preventDefault();
      const f = event.target.elements;
      const body = { title: f.title.value, resource: f.resource.value, terms: { actions: f.actions.value.split(",").map((a) => a.trim()).filter(Boolean) } };
      if (f.description.value) body.description = f.description.value;
      if (f.media_type.value) body.media_type = f.media_type.value;
      if (f.longest.value) body.terms.duration_max = f.longest.value;
      if (f.purposes.value) body.terms.purposes = f.purposes.value.split(",").map((p) => p.trim()).filter(Boolean);
      if (f.audience.value) body.audience = f.audience.value.split(",").map((m) => m.trim()).filter(Boolean);
      try {
        await api("PUT", `/v1/catalog/offers/${encodeURIComponent(f.id.value)}`, body);
        await render();
      } catch (e) { showError(e); }
    } },
    el("input", { name: "id", placeholder: "id, e.g. shipments", required: true, pattern: "[a-z0-9\\-]{1,64}" }),
    el("input", { name: "title", placeholder: "title", required: true }),
    el("input", { name: "resource", placeholder: "resource, e.g. datasets/shipments/*", required: true }),
    el("input", { name: "description", placeholder: "description" }),
    el("input", { name: "media_type", placeholder: "media type" }),
    el("input", { name: "actions", placeholder: "actions", value: "read" }),
    el("input", { name: "longest", placeholder: "longest, e.g. 30d" }),
    el("input", { name: "purposes", placeholder: "purposes (comma-separated)" }),
    el("input", { name: "audience", placeholder: "audience (members, empty: all)" }),
    el("button", { type: "submit" }, "Offer"));
    const peers = members.members.filter((m) => !m.is_me);
    const theirs = el("div", { id: "peer-catalog" });
    const browse = el("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      const peer = event.target.elements.peer.value;
      try {
        const catalog = await json(`/v1/peers/${encodeURIComponent(peer)}/catalog`);
        const datasets = catalog["dcat:dataset"] || [];
        theirs.replaceChildren(table(["Id", "Title", "Resource", "Actions", "Longest", "Purposes", ""], datasets.map((d) => {
          const terms = d["quorate:terms"] || {};
          const purposes = terms["quorate:purposes"] || [];
          const longest = terms["quorate:durationMaxMs"];
          const id = d["dct:identifier"];
          return el("tr", { "data-offer": id },
            el("td", { class: "mono" }, id), el("td", { title: d["dct:description"] || "" }, d["dct:title"]),
            el("td", {}, d["quorate:resource"]), el("td", {}, list(terms["quorate:actions"])),
            el("td", {}, longest ? `${Math.round(longest / 86400000)} days` : ""), el("td", {}, list(purposes)),
            el("td", {}, ask ? act("Request access", () => api("POST", "/v1/access-requests", {
              to: peer, offer: id, duration_ms: longest || 30 * 86400000, purpose: purposes[0] || null,
            }), "secondary") : null));
        })));
      } catch (e) { theirs.replaceChildren(el("p", { class: "error" }, e.message)); }
    } }, el("select", { name: "peer" }, peers.map((m) => el("option", { value: m.name }, m.name))),
    el("button", { type: "submit", class: "secondary" }, "Show their catalog"));
    return [
      el("h1", {}, "Catalog"),
      el("p", { class: "muted" }, "What this organization offers to members, shown to them as a DCAT catalog (GET /v1/catalog); each offer's terms bound the access requests that cite it."),
      publish ? offer : null,
      table(["Id", "Title", "Resource", "Actions", "Longest", "Purposes", "Audience", ""], offers.offers.map((o) => el("tr", { "data-offer": o.id },
        el("td", { class: "mono" }, o.id), el("td", { title: o.description || "" }, o.title), el("td", {}, o.resource),
        el("td", {}, list(o.terms.actions)), el("td", {}, o.terms.duration_max || ""), el("td", {}, list(o.terms.purposes)),
        el("td", {}, o.audience && o.audience.length ? list(o.audience) : "every member"),
        el("td", {}, publish ? act("Remove", () => api("DELETE", `/v1/catalog/offers/${encodeURIComponent(o.id)}`), "danger") : null)))),
      el("h2", {}, "What other members offer us"), browse, theirs,
    ];
  },

  async access() {
    const [all, members] = await Promise.all([json("/v1/access-requests"), json("/v1/members")]);
    const decide = can(["approver"]);
    const requests = all.requests;
    const terms = (r) => `${r.actions.join(", ")} on ${r.resources.join(", ")}` +
      (r.duration_ms ? ` for ${Math.round(r.duration_ms / 3600000)} h` : r.not_after_ms ? ` until ${time(r.not_after_ms)}` : "") +
      (r.purpose ? ` (${r.purpose})` : "") + (r.offer ? ` [offer ${r.offer}]` : "");
    const outcome = (r) => r.state === "accepted" ? `accepted by ${r.by}: grant ${short(r.proposal)}`
      : r.state === "declined" ? `declined by ${r.by}: ${r.reason}` : r.state;
    const incoming = requests.filter((r) => r.direction === "incoming");
    const outgoing = requests.filter((r) => r.direction === "outgoing");
    const peers = members.members.filter((m) => !m.is_me);
    const ask = el("form", { class: "inline", id: "ask", onsubmit: async (event) => {
      event.preventDefault();
      const f = event.target.elements;
      const body = { to: f.to.value, resources: f.resource.value ? [f.resource.value] : [], actions: [f.action.value], duration_ms: Number(f.days.value) * 86400000 };
      if (f.offer.value) body.offer = f.offer.value;
      if (f.purpose.value) body.purpose = f.purpose.value;
      if (f.message.value) body.message = f.message.value;
      try { await api("POST", "/v1/access-requests", body); await render(); } catch (e) { showError(e); }
    } },
    el("select", { name: "to" }, peers.map((m) => el("option", { value: m.name }, m.name))),
    el("input", { name: "offer", placeholder: "offer id (optional)" }),
    el("input", { name: "resource", placeholder: "resource, e.g. datasets/*" }),
    el("select", { name: "action" }, ["read", "list", "write", "delete"].map((a) => el("option", { value: a }, a))),
    el("input", { name: "days", type: "number", min: "1", max: "3650", value: "30" }), "days",
    el("input", { name: "purpose", placeholder: "purpose" }),
    el("input", { name: "message", placeholder: "note for their approvers", maxlength: "1024" }),
    el("button", { type: "submit" }, "Ask for access"));
    return [
      el("h1", {}, "Access requests"),
      el("h2", {}, "Asked of us"),
      table(["Id", "From", "Asks for", "Note", "Asked", "State", ""], incoming.map((r) => {
        const reason = el("input", { name: "reason", placeholder: "reason for declining", maxlength: "256" });
        const open = r.state === "open";
        return el("tr", { "data-request": r.id },
          el("td", { class: "mono" }, short(r.id)), el("td", {}, r.requester), el("td", {}, terms(r)),
          el("td", {}, r.message || ""), el("td", {}, time(r.created_at_ms)),
          el("td", { class: open ? "" : r.state === "accepted" ? "ok" : "bad", title: r.policy || "" }, outcome(r)),
          el("td", {}, decide && open ? [
            act("Accept", () => api("POST", `/v1/access-requests/${r.id}/accept`)), " ",
            reason, " ",
            act("Decline", () => api("POST", `/v1/access-requests/${r.id}/decline`, { reason: reason.value || "declined" }), "danger"),
          ] : null));
      })),
      el("h2", {}, "Asked by us"),
      decide ? ask : null,
      table(["Id", "To", "Asks for", "Asked", "State", ""], outgoing.map((r) => el("tr", { "data-request": r.id },
        el("td", { class: "mono" }, short(r.id)), el("td", {}, r.owner), el("td", {}, terms(r)), el("td", {}, time(r.created_at_ms)),
        el("td", { class: r.state === "open" ? "" : r.state === "accepted" ? "ok" : "bad" }, outcome(r)),
        el("td", {}, decide && r.state === "open" ? act("Withdraw", () => api("POST", `/v1/access-requests/${r.id}/withdraw`), "danger") : null)))),
    ];
  },

  async audit() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const query = new URLSearchParams({ limit: "200" });
    for (const key of ["decision", "caller"]) if (params.get(key)) query.set(key, params.get(key));
    const records = await json(`/v1/audit?${query}`);
    const path = params.get("path") || "";
    const shown = records.filter((r) => !path || r.resource.includes(path)).reverse();
    const filter = el("form", { class: "inline", onsubmit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const [k, v] of new FormData(event.target)) if (v) next.set(k, v);
      location.hash = `#/audit?${next}`;
    } },
    el("select", { name: "decision" }, ["", "allow", "deny"].map((d) => el("option", { value: d, selected: params.get("decision") === d }, d || "any decision"))),
    el("input", { name: "caller", placeholder: "caller (did:key, token:name, oidc:sub)", value: params.get("caller") || "" }),
    el("input", { name: "path", placeholder: "path contains", value: path }),
    el("button", { type: "submit", class: "secondary" }, "Filter"));
    return [
      el("h1", {}, "Audit"),
      el("p", { class: "muted" }, "Each record is hash-chained to the one before; `quorate audit verify` checks the chain offline."),
      filter,
      table(["#", "Time", "Transport", "Caller", "Action", "Resource", "Decision", "Reason", "Bytes"], shown.map((r) => el("tr", {},
        el("td", {}, r.seq), el("td", {}, time(r.time_ms)), el("td", {}, r.transport), el("td", { class: "mono" }, r.caller || ""),
        el("td", {}, r.action), el("td", {}, r.resource), el("td", { class: r.decision === "allow" ? "ok" : "bad" }, r.decision),
        el("td", {}, r.reason || ""), el("td", {}, r.bytes)))),
    ];
  },

  async ledger() {
    const ledger = await json("/v1/ledger");
    const heights = [];
    for (let h = ledger.height; h >= 0 && h > ledger.height - 20; h--) heights.push(h);
    const blocks = await Promise.all(heights.map((h) => json(`/v1/ledger/blocks/${h}`)));
    return [
      el("h1", {}, "Ledger"),
      el("div", { class: "cards" },
        el("div", { class: "card" }, "Height", el("b", {}, ledger.height)),
        el("div", { class: "card" }, "Epoch", el("b", {}, ledger.epoch)),
        el("div", { class: "card" }, "Chain", el("b", {}, ledger.chain_id))),
      el("p", { class: "muted mono" }, `genesis ${ledger.genesis_hash}`),
      table(["Height", "Time", "Proposer", "Entries", "Certificate", "Hash"], blocks.map((b) => el("tr", {},
        el("td", {}, b.height), el("td", {}, time(b.time_ms)), el("td", {}, b.proposer),
        el("td", {}, b.entries.map((e) => el("div", {}, `${e.kind} ${short(e.id)} by ${e.proposer} (${e.endorsements} endorsements)`))),
        el("td", {}, b.certificate ? `round ${b.certificate.round}, signers ${b.certificate.signers.join(", ")}` : ""),
        el("td", { class: "mono" }, short(b.hash))))),
    ];
  },
};

function currentPage() {
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
  const allowed = PAGES.filter(([, , roles]) => can(roles));
  return allowed.find(([n]) => n === name) || allowed[0];
}

// Renders run one at a time; a request while one runs is folded into one
// more render after it, and only the newest render may fill the page.
let rendering = null;
let again = false;
let generation = 0;

async function renderOnce() {
  const mine = ++generation;
  $("error").hidden = true;
  const page = currentPage();
  const target = $("page");
  if (!page) {
    target.replaceChildren(el("p", {}, "Your roles open none of the console's pages."));
    return;
  }
  for (const link of $("nav").children) link.classList.toggle("current", link.dataset.page === page[0]);
  try {
    const children = await views[page[0]]();
    if (mine !== generation || !session.token) return;
    target.replaceChildren(...children);
    target.dataset.rendered = String(mine);
  } catch (e) {
    if (mine === generation) showError(e);
  }
}

async function render() {
  if (rendering) {
    again = true;
    return rendering;
  }
  rendering = (async () => {
    do {
      again = false;
      await renderOnce();
    } while (again);
  })();
  try { await rendering; } finally { rendering = null; }
}

/** Follows GET /v1/events (fetch, so the token goes in a header) to update the height and the proposals. */
async function follow() {
  const controller = new AbortController();
  session.live = controller;
  try {
    const response = await fetch("/v1/events", { headers: { Authorization: `Bearer ${session.token}` }, signal: controller.signal });
    if (!response.ok) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = (block.match(/^event: (.*)$/m) || [])[1];
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (!kind || !data) continue;
        const event = JSON.parse(data);
        if (kind === "block") {
          $("live").textContent = `height ${event.height}`;
          const height = $("height");
          if (height) height.textContent = event.height;
        }
        const page = currentPage();
        if (kind === "reset") render();
        else if (page && page[0] === "proposals" && kind.startsWith("proposal-")) render();
        else if (page && page[0] === "grants" && kind.startsWith("grant-")) render();
      }
    }
  } catch (_) { /* aborted at sign-out, or the node went away */ }
}

async function signIn(token) {
  session.token = token;
  const response = await api("GET", "/v1/principal");
  const me = await response.json();
  session.principal = me.principal;
  session.roles = new Set(me.roles);
  $("who").textContent = `${me.principal} (${me.roles.join(", ")})`;
  $("nav").replaceChildren(...PAGES.filter(([, , roles]) => can(roles)).map(([name, label]) =>
    el("a", { href: `#/${name}`, "data-page": name }, label)));
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("page").hidden = false;
  $("signout").hidden = false;
  follow();
  await render();
}

function signOut() {
  if (session.live) session.live.abort();
  Object.assign(session, { token: null, principal: null, roles: new Set(), live: null });
  for (const id of ["nav", "page", "signout"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  $("live").textContent = "";
  $("page").replaceChildren();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("token");
  try {
    await signIn(input.value.trim());
    input.value = "";
  } catch (e) {
    session.token = null;
    showError(e);
  }
});
$("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", () => { if (session.token) render(); });

// Sign-in through the organization's identity provider: OpenID Connect's
// authorization code flow with PKCE (the console is a public client). The
// verifier, state and nonce wait in sessionStorage while the browser is at
// the provider; the ID token it returns is the bearer token, kept in memory.
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
const redirectUri = () => `${location.origin}/console`;

async function startSso() {
  const client = session.sso;
  const flow = { verifier: random(), state: random(), nonce: random() };
  sessionStorage.setItem("quorate-sso", JSON.stringify(flow));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(flow.verifier)));
  const url = new URL(client.authorization_endpoint);
  for (const [key, value] of Object.entries({
    response_type: "code", client_id: client.client_id, redirect_uri: redirectUri(), scope: "openid",
    state: flow.state, nonce: flow.nonce, code_challenge: challenge, code_challenge_method: "S256",
  })) url.searchParams.set(key, value);
  location.assign(url.toString());
}

async function finishSso(params) {
  const flow = JSON.parse(sessionStorage.getItem("quorate-sso") || "null");
  sessionStorage.removeItem("quorate-sso");
  history.replaceState(null, "", "/console");
  // Nothing the URL says is shown or used unless this page started the flow.
  if (!flow || params.get("state") !== flow.state) throw new Error("this sign-in was not started here (its state does not match); start again");
  if (params.has("error")) throw new Error(`the identity provider refused: ${params.get("error_description") || params.get("error")}`);
  const client = session.sso;
  const response = await fetch(client.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectUri(),
      client_id: client.client_id, code_verifier: flow.verifier,
    }),
  });
  if (!response.ok) throw new Error(`the identity provider's token endpoint answered ${response.status}`);
  const { id_token: idToken } = await response.json();
  const claims = JSON.parse(atob(idToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  if (claims.nonce !== flow.nonce) throw new Error("the ID token was not issued for this sign-in (its nonce does not match)");
  await signIn(idToken);
}

async function offerSso() {
  const described = await (await fetch("/console/sign-in.json")).json();
  if (!described.oidc) return;
  session.sso = described.oidc;
  const button = $("sso-button");
  button.textContent = `Sign in with ${described.oidc.issuer}`;
  button.addEventListener("click", () => startSso().catch(showError));
  $("sso").hidden = false;
  const params = new URLSearchParams(location.search);
  if (params.has("code") || params.has("error")) await finishSso(params);
}

offerSso().catch(showError);
