// The Bulkhead operator console. One page, no framework, no build step: every screen is
// drawn from the public API with the platform key the operator signed in with. The key
// lives in this tab's sessionStorage and travels only as a bearer header (never a cookie).
// Text from the API is only ever set as text (textContent), never parsed as HTML.

const KEY = 'bulkhead.console.key';
const state = { key: sessionStorage.getItem(KEY), me: null, timers: [], seq: 0 };

// ---------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, { body, tenant, query } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { authorization: `Bearer ${state.key}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (tenant) headers['bulkhead-tenant'] = tenant;
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || text || response.statusText);
  }
  return { status: response.status, data };
}

const get = async (path, query, tenant) => (await api('GET', path, { query, tenant })).data;
/// A list route's items, whether it answers a page or a bare array.
const items = async (path, query) => {
  const data = await get(path, query);
  return Array.isArray(data) ? data : (data && data.items) || [];
};

// ---------------------------------------------------------------------------------------
// Drawing

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const badge = (text) => h('span', { class: `badge ${text}` }, text);
const num = (n) => (n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 }));
const time = (t) => (t ? new Date(t).toISOString().replace('T', ' ').slice(0, 19) : '—');
const link = (href, text) => h('a', { href }, text);
const tenantLink = (id) => (id ? link(`#/tenants/${encodeURIComponent(id)}`, id) : '—');

function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(seconds) {
  if (seconds === undefined || seconds === null) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function table(columns, rows, { empty = 'Nothing here.', onRow, testid } = {}) {
  if (!rows.length) return h('p', { class: 'muted', 'data-testid': testid && `${testid}-empty` }, empty);
  return h(
    'table',
    { 'data-testid': testid },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null }, c.title)))),
    h(
      'tbody',
      {},
      rows.map((row) =>
        h(
          'tr',
          { class: onRow ? 'link' : null, onclick: onRow ? () => onRow(row) : null, 'data-id': row.id ?? row.name ?? row.tenant },
          columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(row))),
        ),
      ),
    ),
  );
}

function progress(done, total) {
  const share = total > 0 ? Math.min(1, done / total) : 0;
  const bar = h('div');
  bar.style.width = `${(share * 100).toFixed(1)}%`;
  return h('div', { class: 'progress', title: `${num(done)} of ${num(total)}` }, bar);
}

function errorBox(error) {
  if (error instanceof ApiError) {
    const refused = error.status === 403;
    return h(
      'div',
      { class: refused ? 'refused' : 'error', 'data-testid': refused ? 'refused' : 'error' },
      refused ? 'This key may not see or do this: ' : `${error.status} `,
      h('code', {}, error.code),
      ' — ',
      error.message,
    );
  }
  return h('div', { class: 'error', 'data-testid': 'error' }, String(error && error.message ? error.message : error));
}

/// Runs `load` and puts what it draws into a fresh section; an error is shown in its place.
function section(load) {
  const el = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const seq = state.seq;
  (async () => {
    try {
      const content = await load();
      if (seq === state.seq) el.replaceChildren(...[content].flat().filter(Boolean));
    } catch (error) {
      if (seq === state.seq) el.replaceChildren(errorBox(error));
    }
  })();
  return el;
}

/// Redraws `load` into a section every `ms` while the page is shown, as long as `again`
/// says the data is still changing.
function live(load, ms, again) {
  const el = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const seq = state.seq;
  const tick = async () => {
    if (seq !== state.seq) return;
    let more = false;
    try {
      const [content, data] = await load();
      if (seq !== state.seq) return;
      el.replaceChildren(...[content].flat().filter(Boolean));
      more = again(data);
    } catch (error) {
      if (seq === state.seq) el.replaceChildren(errorBox(error));
      more = true;
    }
    if (more && seq === state.seq) state.timers.push(setTimeout(tick, ms));
  };
  tick();
  return el;
}

// Charts: plain SVG, drawn here.
const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/// Horizontal bars, one per item: `[{label, value, title}]`.
function barChart(items, format = num) {
  if (!items.length) return h('p', { class: 'muted' }, 'Nothing in this window.');
  const width = 420;
  const row = 22;
  const labelWidth = 110;
  const max = Math.max(...items.map((i) => i.value), 1);
  const height = items.length * row + 4;
  return s(
    'svg',
    { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' },
    items.map((item, i) => {
      const w = Math.max(1, ((width - labelWidth - 90) * item.value) / max);
      return s(
        'g',
        {},
        s('text', { x: 0, y: i * row + 15 }, item.label.length > 16 ? `${item.label.slice(0, 15)}…` : item.label),
        s('rect', { class: 'bar', x: labelWidth, y: i * row + 4, width: w, height: row - 8, rx: 2 }, s('title', {}, item.title || `${item.label}: ${format(item.value)}`)),
        s('text', { x: labelWidth + w + 6, y: i * row + 15 }, format(item.value)),
      );
    }),
  );
}

/// One point per period from `hours` ago to now (`step` hours each), zero where `periods`
/// (newest first, as the usage API answers) has nothing; `pick` reads a period's value.
function slots(periods, hours, step, pick) {
  const ms = step * 3600 * 1000;
  const end = Math.floor(Date.now() / ms) * ms;
  const byStart = new Map();
  for (const p of periods) {
    const value = pick(p);
    if (value !== undefined && value !== null) byStart.set(Math.floor(Date.parse(p.from) / ms) * ms, value);
  }
  const points = [];
  for (let t = end - (hours / step - 1) * ms; t <= end; t += ms) points.push({ t: new Date(t).toISOString(), value: byStart.get(t) ?? 0 });
  return points;
}

/// Columns over time: `[{t, value}]`, oldest first.
function timeChart(points, format = num) {
  if (!points.some((p) => p.value)) return h('p', { class: 'muted' }, 'Nothing in this window.');
  const width = 640;
  const height = 150;
  const left = 56;
  const bottom = 18;
  const max = Math.max(...points.map((p) => p.value), 1);
  const step = (width - left) / points.length;
  const y = (v) => height - bottom - ((height - bottom - 8) * v) / max;
  return s(
    'svg',
    { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' },
    s('text', { x: 0, y: 12 }, format(max)),
    s('text', { x: 0, y: height - bottom }, '0'),
    s('line', { x1: left, x2: width, y1: height - bottom, y2: height - bottom, stroke: '#d9dee7' }),
    points.map((p, i) =>
      s(
        'rect',
        { class: 'bar', x: left + i * step + 1, y: y(p.value), width: Math.max(1, step - 2), height: Math.max(0, height - bottom - y(p.value)) },
        s('title', {}, `${time(p.t)}: ${format(p.value)}`),
      ),
    ),
    s('text', { x: left, y: height - 4 }, time(points[0].t).slice(5, 16)),
    s('text', { x: width, y: height - 4, 'text-anchor': 'end' }, time(points[points.length - 1].t).slice(5, 16)),
  );
}

/// Stacked horizontal bars: `[{label, parts: {pool, bridge, silo}}]`.
function stackedChart(rows) {
  if (!rows.length) return h('p', { class: 'muted' }, 'No domains.');
  const width = 640;
  const row = 24;
  const labelWidth = 150;
  const keys = ['pool', 'bridge', 'silo'];
  const total = (r) => keys.reduce((sum, k) => sum + (r.parts[k] || 0), 0);
  const max = Math.max(...rows.map(total), 1);
  const svg = s(
    'svg',
    { class: 'chart', viewBox: `0 0 ${width} ${rows.length * row + 4}`, width, height: rows.length * row + 4, role: 'img' },
    rows.map((r, i) => {
      let x = labelWidth;
      const parts = keys.map((k) => {
        const w = ((width - labelWidth - 70) * (r.parts[k] || 0)) / max;
        const rect = s('rect', { class: k, x, y: i * row + 4, width: w, height: row - 8 }, s('title', {}, `${r.label}: ${num(r.parts[k] || 0)} ${k}`));
        x += w;
        return rect;
      });
      return s('g', {}, s('text', { x: 0, y: i * row + 16 }, r.label), parts, s('text', { x: x + 6, y: i * row + 16 }, num(total(r))));
    }),
  );
  return h('div', {}, svg, h('div', { class: 'legend' }, keys.map((k) => h('span', {}, h('i', { class: k }), k))));
}

// ---------------------------------------------------------------------------------------
// Forms and actions

function field(name, labelText, input) {
  input.name = name;
  return h('label', {}, labelText, input);
}

function select(name, labelText, options, current) {
  const el = h('select', { name }, options.map(([value, text]) => h('option', { value, selected: value === current }, text)));
  return h('label', {}, labelText, el);
}

/// Runs an action from a button; shows what it answered in `out`, then calls `then`.
async function act(button, out, run, then) {
  button.disabled = true;
  out.replaceChildren();
  try {
    const result = await run();
    if (then) await then(result);
  } catch (error) {
    out.replaceChildren(errorBox(error));
  } finally {
    button.disabled = false;
  }
}

function confirmDialog(message, expected) {
  return new Promise((resolve) => {
    const input = h('input', { 'aria-label': 'confirmation', 'data-testid': 'confirm-input', autocomplete: 'off' });
    const ok = h('button', { class: 'danger', 'data-testid': 'confirm-ok' }, 'Delete');
    const cancel = h('button', { class: 'secondary' }, 'Cancel');
    const dialog = h('dialog', {}, h('p', {}, message), h('p', { class: 'muted' }, 'Type ', h('code', {}, expected), ' to confirm.'), input, h('div', { class: 'actions' }, ok, cancel));
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    ok.addEventListener('click', () => done(input.value === expected));
    cancel.addEventListener('click', () => done(false));
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

const isAdmin = () => state.me && state.me.kind === 'platform_admin';
const nowMinus = (hours) => new Date(Date.now() - hours * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');

// ---------------------------------------------------------------------------------------
// Pages

async function overview() {
  const domains = section(async () => {
    const list = await items('/v1/domains');
    return stackedChart(list.map((d) => ({ label: d.name, parts: d.tenants || {} })));
  });
  const stats = section(async () => {
    const [domainList, rollouts, moves, findings] = await Promise.all([
      items('/v1/domains'),
      items('/v1/rollouts').catch(() => null),
      get('/v1/moves', { active: true, limit: 100 }).catch(() => null),
      get('/v1/findings', { state: 'open', limit: 100 }).catch(() => null),
    ]);
    const tenants = domainList.reduce((sum, d) => sum + Object.values(d.tenants || {}).reduce((a, b) => a + b, 0), 0);
    const listOf = (x) => (x && Array.isArray(x.items) ? x.items : Array.isArray(x) ? x : null);
    const running = listOf(rollouts) && listOf(rollouts).filter((r) => r.state === 'running').length;
    const stat = (label, value, href) => h('a', { class: 'stat', href }, h('b', {}, value === null ? '—' : num(value)), label);
    return h(
      'div',
      { class: 'stats' },
      stat('tenants', tenants, '#/tenants'),
      stat('domains', domainList.length, '#/platform'),
      stat('moves running', listOf(moves) ? listOf(moves).length : null, '#/moves'),
      stat('rollouts running', running, '#/collections'),
      stat('open findings', listOf(findings) ? listOf(findings).length : null, '#/findings'),
    );
  });
  const top = (by, title, format) =>
    h(
      'div',
      { class: 'card' },
      h('h2', {}, title),
      section(async () => {
        const result = await get('/v1/usage/top', { by, limit: 10 });
        return barChart((result.items || []).map((t) => ({ label: t.tenant, value: t.value })), format);
      }),
    );
  return [
    h('h1', {}, 'Overview'),
    stats,
    h('div', { class: 'grid' }, top('requests', 'Top tenants by requests, last 7 days'), top('records', 'Top tenants by records written, last 7 days'), top('bytes', 'Top tenants by storage', bytes)),
    h('div', { class: 'card' }, h('h2', {}, 'Tenants per domain'), domains),
  ];
}

async function tenants(_params, query) {
  const [tiers, domains] = await Promise.all([items('/v1/tiers'), items('/v1/domains')]);
  const tierOptions = [['', 'any tier'], ...tiers.map((t) => [t.name, t.name])];
  const filters = h(
    'form',
    { class: 'filters', 'data-testid': 'tenant-filters' },
    field('q', 'Search id or name', h('input', { value: query.q || '', placeholder: 'acme', type: 'search' })),
    select('tier', 'Tier', tierOptions, query.tier || ''),
    select('status', 'Status', [['', 'any status'], ...['active', 'suspended', 'moving', 'provisioning', 'deleting'].map((v) => [v, v])], query.status || ''),
    select('domain', 'Domain', [['', 'any domain'], ...domains.map((d) => [d.name, d.name])], query.domain || ''),
    select('isolation', 'Isolation', [['', 'any model'], ...['pool', 'bridge', 'silo'].map((v) => [v, v])], query.isolation || ''),
    h('button', { type: 'submit' }, 'Filter'),
  );
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (v) next.set(k, v);
    go(`#/tenants${next.toString() ? `?${next}` : ''}`);
  });

  const list = section(async () => {
    const page = await get('/v1/tenants', { limit: 50, cursor: query.cursor, q: query.q, tier: query.tier, status: query.status, domain: query.domain, isolation: query.isolation });
    const nextQuery = new URLSearchParams(query);
    nextQuery.set('cursor', page.next_cursor || '');
    const firstQuery = new URLSearchParams(query);
    firstQuery.delete('cursor');
    return [
      table(
        [
          { title: 'Tenant', cell: (t) => tenantLink(t.id) },
          { title: 'Name', cell: (t) => t.name },
          { title: 'Tier', cell: (t) => t.tier },
          { title: 'Model', cell: (t) => badge(t.placement.isolation) },
          { title: 'Domain', cell: (t) => t.placement.domain },
          { title: 'Status', cell: (t) => badge(t.status) },
          { title: 'Created', cell: (t) => time(t.created_at) },
        ],
        page.items,
        { empty: 'No tenant matches.', onRow: (t) => go(`#/tenants/${encodeURIComponent(t.id)}`), testid: 'tenants' },
      ),
      h(
        'div',
        { class: 'pager' },
        query.cursor ? link(`#/tenants?${firstQuery}`, '« first page') : null,
        page.next_cursor ? link(`#/tenants?${nextQuery}`, 'next page »') : h('span', { class: 'muted' }, `${page.items.length} shown`),
      ),
    ];
  });

  const out = h('div');
  const create = h(
    'form',
    { class: 'inline', 'data-testid': 'create-tenant' },
    field('id', 'Id', h('input', { required: true, pattern: '[a-z0-9][a-z0-9\\-]{1,62}', title: 'lower-case letters, digits and dashes; 2 to 63 characters', placeholder: 'acme' })),
    field('name', 'Name', h('input', { required: true, placeholder: 'Acme Corp' })),
    select('tier', 'Tier', tiers.map((t) => [t.name, `${t.name} (${t.isolation})`]), tiers[0] && tiers[0].name),
    h('button', { type: 'submit' }, 'Create tenant'),
  );
  create.addEventListener('submit', (event) => {
    event.preventDefault();
    const form = Object.fromEntries(new FormData(create));
    act(create.querySelector('button'), out, () => api('POST', '/v1/tenants', { body: form }), () => go(`#/tenants/${encodeURIComponent(form.id)}`));
  });
  return [h('h1', {}, 'Tenants'), filters, list, h('div', { class: 'card' }, h('h2', {}, 'New tenant'), create, out)];
}

function movesTable(moves, testid) {
  return table(
    [
      { title: 'Move', cell: (m) => h('code', {}, m.id) },
      { title: 'Tenant', cell: (m) => tenantLink(m.tenant) },
      { title: 'Phase', cell: (m) => h('span', { 'data-testid': 'move-phase' }, badge(m.phase)) },
      { title: 'From → to', cell: (m) => `${m.source.isolation}@${m.source.domain} → ${m.target.isolation}@${m.target.domain}` },
      { title: 'Rows', cell: (m) => h('div', {}, progress(m.rows_copied, m.rows_total), h('span', { class: 'muted' }, `${num(m.rows_copied)} / ${num(m.rows_total)}`)) },
      { title: 'Rate', num: true, cell: (m) => `${num(m.rate)}/s` },
      { title: 'ETA', cell: (m) => duration(m.eta_seconds) },
      { title: 'Write pause', num: true, cell: (m) => (m.freeze_ms === null || m.freeze_ms === undefined ? '—' : `${num(m.freeze_ms)} ms`) },
      { title: 'Pace', cell: (m) => (m.pace ? `${Math.round(m.pace.duty * 100)}% ${m.pace.state}` : '—') },
      { title: 'Started', cell: (m) => h('span', {}, time(m.created_at), h('br'), h('span', { class: 'muted' }, m.started_by)) },
      { title: '', cell: (m) => (m.error ? h('span', { class: 'muted' }, m.error) : moveActive(m) ? cancelMove(m) : null) },
    ],
    moves,
    { empty: 'No moves.', testid },
  );
}

const moveActive = (m) => !['done', 'rolled_back'].includes(m.phase);

function cancelMove(m) {
  const out = h('span');
  const button = h('button', { class: 'secondary' }, 'Cancel');
  button.addEventListener('click', () => act(button, out, () => api('POST', `/v1/moves/${encodeURIComponent(m.id)}/cancel`)));
  return h('span', {}, button, out);
}

async function tenantPage([id]) {
  const tenant = (await get(`/v1/tenants/${encodeURIComponent(id)}`));
  const tiers = await items('/v1/tiers');
  const domains = await items('/v1/domains');
  const out = h('div', { 'data-testid': 'action-result' });
  const reload = () => render();
  const path = `/v1/tenants/${encodeURIComponent(id)}`;

  const suspend = h('button', { class: 'secondary', 'data-testid': 'suspend' }, tenant.status === 'suspended' ? 'Resume' : 'Suspend');
  suspend.addEventListener('click', () =>
    act(suspend, out, () => api('PATCH', path, { body: { status: tenant.status === 'suspended' ? 'active' : 'suspended' } }), reload),
  );

  const tierSelect = h('select', { 'aria-label': 'tier', 'data-testid': 'tier-select' }, tiers.map((t) => h('option', { value: t.name, selected: t.name === tenant.tier }, `${t.name} (${t.isolation})`)));
  const changeTier = h('button', { class: 'secondary' }, 'Change tier');
  changeTier.addEventListener('click', () =>
    act(changeTier, out, () => api('PATCH', path, { body: { tier: tierSelect.value } }), (result) => {
      if (result.status === 202) go('#/moves');
      else reload();
    }),
  );

  const isolation = h('select', { 'aria-label': 'isolation', 'data-testid': 'move-isolation' }, ['pool', 'bridge', 'silo'].map((v) => h('option', { value: v, selected: v === tenant.placement.isolation }, v)));
  const domain = h('select', { 'aria-label': 'domain', 'data-testid': 'move-domain' }, domains.map((d) => h('option', { value: d.name, selected: d.name === tenant.placement.domain }, d.name)));
  const move = h('button', { class: 'secondary', 'data-testid': 'start-move' }, 'Move live');
  move.addEventListener('click', () =>
    act(move, out, () => api('POST', `${path}/moves`, { body: { isolation: isolation.value, domain: domain.value } }), () => go('#/moves')),
  );

  // Deleting a tenant is for admins; an operator is not offered it (the API refuses it too).
  const remove = isAdmin() ? h('button', { class: 'danger', 'data-testid': 'delete' }, 'Delete…') : null;
  remove?.addEventListener('click', async () => {
    if (!(await confirmDialog(`Delete tenant ${id} with all its data, keys and storage? This cannot be undone.`, id))) return;
    act(remove, out, () => api('DELETE', path), () => go('#/tenants'));
  });

  const p = tenant.placement;
  const facts = h('dl', { class: 'kv', 'data-testid': 'tenant-facts' });
  for (const [k, v] of [
    ['Id', h('code', {}, tenant.id)],
    ['Tier', tenant.tier],
    ['Status', badge(tenant.status)],
    ['Labels', Object.entries(tenant.labels || {}).map(([k2, v2]) => `${k2}=${v2}`).join(', ') || '—'],
    ['Placement', h('span', {}, badge(p.isolation), ` on ${p.domain}`, h('span', { class: 'muted' }, ` (${p.namespace}, writes ${p.write_state}, schema ${p.schema_version}, epoch ${p.epoch})`))],
    ['Created', time(tenant.created_at)],
    ['Updated', time(tenant.updated_at)],
  ]) {
    facts.append(h('dt', {}, k), h('dd', {}, v));
  }

  const moves = live(
    async () => {
      const page = await get(`${path}/moves`);
      const items = page.items || [];
      return [movesTable(items, 'tenant-moves'), items];
    },
    1000,
    (items) => items.some(moveActive),
  );

  const usage = section(async () => {
    const hourly = await items('/v1/usage', { tenant: id, granularity: 'hour', from: nowMinus(48), limit: 100 });
    const daily = await items('/v1/usage', { tenant: id, granularity: 'day', from: nowMinus(24 * 30), limit: 100 });
    const measured = h('span');
    const measure = h('button', { class: 'secondary', 'data-testid': 'measure-storage' }, 'Measure storage now');
    measure.addEventListener('click', () => act(measure, measured, () => api('POST', '/v1/usage/storage', { query: { tenant: id } }), render));
    const last = daily.find((d) => d.storage);
    return [
      h(
        'p',
        {},
        last ? `Stored at the last sample (${time(last.storage.sampled_at)}): ${num(last.storage.records)} records, ${bytes(last.storage.bytes)}. ` : 'No storage sample yet. ',
        measure,
        measured,
      ),
      h(
        'div',
        { class: 'grid' },
        h('div', {}, h('h2', {}, 'Requests per hour, last 48 h'), timeChart(slots(hourly, 48, 1, (u) => u.requests))),
        h('div', {}, h('h2', {}, 'Records written per hour, last 48 h'), timeChart(slots(hourly, 48, 1, (u) => u.records_written))),
        h('div', {}, h('h2', {}, 'Records stored, by day'), timeChart(slots(daily, 24 * 30, 24, (u) => u.storage && u.storage.records))),
        h('div', {}, h('h2', {}, 'Bytes stored, by day'), timeChart(slots(daily, 24 * 30, 24, (u) => u.storage && u.storage.bytes), bytes)),
      ),
    ];
  });

  const admin = isAdmin()
    ? [
        h('div', { class: 'card' }, h('h2', {}, 'Keys'), section(async () => {
          const keys = await get(`${path}/keys`);
          return table(
            [
              { title: 'Key', cell: (k) => h('code', {}, k.id) },
              { title: 'Name', cell: (k) => k.name },
              { title: 'Role', cell: (k) => k.role },
              { title: 'Created', cell: (k) => time(k.created_at) },
              { title: 'Expires', cell: (k) => time(k.expires_at) },
              { title: 'State', cell: (k) => badge(k.revoked ? 'revoked' : 'active') },
            ],
            keys.items || keys,
            { empty: 'No keys.', testid: 'keys' },
          );
        })),
        h('div', { class: 'card' }, h('h2', {}, 'Members'), section(async () => {
          const members = await get(`${path}/members`);
          return table(
            [
              { title: 'User', cell: (m) => h('code', {}, m.user_id) },
              { title: 'Email', cell: (m) => m.email || '—' },
              { title: 'Role', cell: (m) => (typeof m.role === 'string' ? m.role : JSON.stringify(m.role)) },
              { title: 'State', cell: (m) => badge(m.disabled ? 'disabled' : m.status) },
              { title: 'Since', cell: (m) => time(m.created_at) },
            ],
            members.items || members,
            { empty: 'No members.', testid: 'members' },
          );
        })),
      ]
    : [];

  return [
    h('h1', {}, `${tenant.name} `, h('span', { class: 'muted' }, tenant.id)),
    h(
      'div',
      { class: 'card' },
      facts,
      h('div', { class: 'actions' }, suspend, tierSelect, changeTier, isolation, domain, move, remove, isAdmin() ? link(`#/tenants/${encodeURIComponent(id)}/records`, 'Records →') : null),
      out,
    ),
    h('div', { class: 'card' }, h('h2', {}, 'Placement history'), moves),
    h('div', { class: 'card' }, h('h2', {}, 'Usage'), usage),
    admin,
  ];
}

async function records([id], query) {
  if (!isAdmin()) {
    // The API refuses an operator any record; the page does not even ask.
    return h('div', { class: 'refused', 'data-testid': 'refused' }, 'Operators never see tenant records. Sign in with an admin key to read them (every such read is audited).');
  }
  const collections = await items('/v1/collections');
  const names = (collections.items || collections).map((c) => c.name);
  const chosen = query.collection || names[0];
  const picker = h('form', { class: 'filters' }, select('collection', 'Collection', names.map((n) => [n, n]), chosen), h('button', { type: 'submit' }, 'Show'));
  picker.addEventListener('submit', (event) => {
    event.preventDefault();
    go(`#/tenants/${encodeURIComponent(id)}/records?collection=${encodeURIComponent(new FormData(picker).get('collection'))}`);
  });
  const list = chosen
    ? section(async () => {
        const page = await get(`/v1/collections/${encodeURIComponent(chosen)}/records`, { limit: 25, cursor: query.cursor }, id);
        const next = new URLSearchParams({ collection: chosen, cursor: page.next_cursor || '' });
        return [
          table(
            [
              { title: 'Id', cell: (r) => h('code', {}, r.id) },
              { title: 'Version', num: true, cell: (r) => r.version },
              { title: 'Updated', cell: (r) => time(r.updated_at) },
              { title: 'Record', cell: (r) => h('pre', { class: 'json' }, JSON.stringify(r, null, 1)) },
            ],
            page.items,
            { empty: 'No records.', testid: 'records' },
          ),
          page.next_cursor ? h('div', { class: 'pager' }, link(`#/tenants/${encodeURIComponent(id)}/records?${next}`, 'next page »')) : null,
        ];
      })
    : h('p', { class: 'muted' }, 'No collections yet.');
  return [h('h1', {}, 'Records of ', tenantLink(id)), h('p', { class: 'notice' }, 'Reading a tenant\'s records as the platform admin is audited.'), picker, list];
}

async function platform() {
  const tiers = section(async () => {
    const list = await items('/v1/tiers');
    return table(
      [
        { title: 'Tier', cell: (t) => h('b', {}, t.name) },
        { title: 'Model', cell: (t) => badge(t.isolation) },
        { title: 'Price / month', num: true, cell: (t) => `${t.monthly_price} ${t.currency || ''}` },
        { title: 'Domains', cell: (t) => (t.domains || []).join(', ') || 'any' },
        { title: 'Limits', cell: (t) => (t.limits ? h('code', {}, JSON.stringify(t.limits)) : '—') },
        { title: 'Description', cell: (t) => t.description || '' },
      ],
      list,
      { testid: 'tiers' },
    );
  });
  const domains = section(async () => {
    const [list, plan] = await Promise.all([items('/v1/domains'), get('/v1/placement/plan').catch(() => null)]);
    const load = new Map(((plan && plan.domains_before) || []).map((d) => [d.domain, d]));
    return [
      stackedChart(list.map((d) => ({ label: d.name, parts: d.tenants || {} }))),
      table(
        [
          { title: 'Domain', cell: (d) => h('b', {}, d.name) },
          { title: 'Engine', cell: (d) => d.engine },
          { title: 'Available', cell: (d) => badge(d.available ? 'ok' : 'failed') },
          { title: 'Pool', num: true, cell: (d) => num((d.tenants || {}).pool || 0) },
          { title: 'Bridge', num: true, cell: (d) => num((d.tenants || {}).bridge || 0) },
          { title: 'Silo', num: true, cell: (d) => num((d.tenants || {}).silo || 0) },
          { title: 'Stored', num: true, cell: (d) => (load.get(d.name) ? bytes(load.get(d.name).bytes) : '—') },
          { title: 'Load score', num: true, cell: (d) => (load.get(d.name) ? load.get(d.name).score.toFixed(2) : '—') },
          { title: 'Cost / month', num: true, cell: (d) => (d.monthly_cost ? `${d.monthly_cost} ${d.currency || ''}` : '—') },
        ],
        list,
        { testid: 'domains' },
      ),
    ];
  });
  const plan = section(async () => {
    const result = await get('/v1/placement/plan');
    return table(
      [
        { title: 'Tenant', cell: (m) => tenantLink(m.tenant) },
        { title: 'From', cell: (m) => `${m.from.isolation}@${m.from.domain}` },
        { title: 'To', cell: (m) => `${m.to.isolation}@${m.to.domain}` },
        { title: 'Why', cell: (m) => m.detail || m.reason },
      ],
      result.moves,
      { empty: 'The planner proposes no move: every domain is within its capacity and every tenant within its share.' },
    );
  });
  return [
    h('h1', {}, 'Tiers & domains'),
    h('div', { class: 'card' }, h('h2', {}, 'Tiers'), tiers),
    h('div', { class: 'card' }, h('h2', {}, 'Domains and their load'), domains),
    h('div', { class: 'card' }, h('h2', {}, 'Placement plan (last 7 days of usage)'), plan),
  ];
}

function rolloutActions(r) {
  // Resuming and cancelling rollouts manage collections: admin only.
  if (!isAdmin()) return null;
  const out = h('span');
  const buttons = [];
  if (r.state === 'running') {
    const cancel = h('button', { class: 'secondary' }, 'Cancel');
    cancel.addEventListener('click', () => act(cancel, out, () => api('POST', `/v1/rollouts/${encodeURIComponent(r.id)}/cancel`)));
    buttons.push(cancel);
  } else if (r.state !== 'done') {
    const resume = h('button', { class: 'secondary' }, 'Resume');
    resume.addEventListener('click', () => act(resume, out, () => api('POST', `/v1/rollouts/${encodeURIComponent(r.id)}/resume`)));
    buttons.push(resume);
  }
  return h('span', {}, buttons, out);
}

async function collections() {
  const list = section(async () => {
    const result = await items('/v1/collections');
    return table(
      [
        { title: 'Collection', cell: (c) => h('b', {}, c.name) },
        { title: 'Version', num: true, cell: (c) => c.version },
        { title: 'Fields', cell: (c) => Object.keys(c.fields || {}).join(', ') },
        { title: 'Placements behind', num: true, cell: (c) => num(c.placements_behind || 0) },
      ],
      result,
      { empty: 'No collections yet.', testid: 'collections' },
    );
  });
  const rollouts = live(
    async () => {
      const rollouts = await items('/v1/rollouts');
      return [
        table(
          [
            { title: 'Rollout', cell: (r) => h('code', {}, r.id) },
            { title: 'Collection', cell: (r) => `${r.collection} v${r.version}` },
            { title: 'State', cell: (r) => badge(r.state) },
            { title: 'Placements', cell: (r) => h('div', {}, progress(r.placements_done, r.placements_total), h('span', { class: 'muted' }, `${num(r.placements_done)} / ${num(r.placements_total)} done, ${num(r.placements_failed)} failed`)) },
            { title: 'Wave', cell: (r) => r.wave || '—' },
            { title: 'Rate', num: true, cell: (r) => `${num(r.rate)}/s` },
            { title: 'ETA', cell: (r) => duration(r.eta_seconds) },
            { title: 'Last error', cell: (r) => r.last_error || '' },
            { title: 'Started', cell: (r) => time(r.created_at) },
            { title: '', cell: rolloutActions },
          ],
          rollouts,
          { empty: 'No rollouts yet.', testid: 'rollouts' },
        ),
        rollouts,
      ];
    },
    1500,
    (list) => list.some((r) => r.state === 'running'),
  );
  return [h('h1', {}, 'Collections & rollouts'), h('div', { class: 'card' }, h('h2', {}, 'Collections'), list), h('div', { class: 'card' }, h('h2', {}, 'Rollouts'), rollouts)];
}

async function moves(_params, query) {
  const activeOnly = query.active === 'true';
  const toggle = h('label', {}, h('span', {}, h('input', { type: 'checkbox', checked: activeOnly, 'data-testid': 'active-only' }), ' running only'));
  toggle.querySelector('input').addEventListener('change', (e) => go(e.target.checked ? '#/moves?active=true' : '#/moves'));
  const list = live(
    async () => {
      const page = await get('/v1/moves', { limit: 50, active: activeOnly ? true : undefined, cursor: query.cursor });
      return [movesTable(page.items, 'moves'), page.items];
    },
    1000,
    (items) => items.some(moveActive),
  );
  return [h('h1', {}, 'Moves'), toggle, list];
}

async function audit(_params, query) {
  const filters = h(
    'form',
    { class: 'filters', 'data-testid': 'audit-filters' },
    field('tenant', 'Tenant', h('input', { value: query.tenant || '' })),
    field('actor', 'Actor', h('input', { value: query.actor || '' })),
    field('action', 'Action (move.* for a prefix)', h('input', { value: query.action || '' })),
    select('outcome', 'Outcome', [['', 'any'], ['ok', 'ok'], ['denied', 'denied']], query.outcome || ''),
    field('from', 'From (UTC)', h('input', { type: 'datetime-local', value: query.from ? query.from.slice(0, 16) : '' })),
    field('to', 'To (UTC)', h('input', { type: 'datetime-local', value: query.to ? query.to.slice(0, 16) : '' })),
    h('button', { type: 'submit' }, 'Filter'),
  );
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) {
      if (!v) continue;
      next.set(k, k === 'from' || k === 'to' ? `${v}:00Z` : v);
    }
    go(`#/audit?${next}`);
  });
  const verify = section(async () => {
    const result = await get('/v1/audit/verify');
    if (result.ok) {
      return h('div', { class: 'notice', 'data-testid': 'chain-ok' }, `The chain verifies: ${num(result.checked)} entries checked from the anchor`, result.head ? ` to the head #${result.head.seq}.` : '.');
    }
    return h('div', { class: 'error', 'data-testid': 'chain-broken' }, 'The chain is broken: ', h('code', {}, JSON.stringify(result.broken)));
  });
  const list = section(async () => {
    const page = await get('/v1/audit', { ...query, limit: 50 });
    const next = new URLSearchParams(query);
    next.set('cursor', page.next_cursor || '');
    return [
      table(
        [
          { title: '#', num: true, cell: (e) => e.seq },
          { title: 'At', cell: (e) => time(e.at) },
          { title: 'Actor', cell: (e) => h('code', {}, e.actor) },
          { title: 'Action', cell: (e) => h('b', {}, e.action) },
          { title: 'Target', cell: (e) => e.target },
          { title: 'Tenant', cell: (e) => tenantLink(e.tenant) },
          { title: 'Outcome', cell: (e) => badge(e.outcome.startsWith('denied') ? 'denied' : e.outcome) },
          { title: 'Detail', cell: (e) => (e.detail ? h('code', {}, e.detail.length > 160 ? `${e.detail.slice(0, 160)}…` : e.detail) : '') },
        ],
        page.items,
        { empty: 'No entry matches.', testid: 'audit' },
      ),
      page.next_cursor ? h('div', { class: 'pager' }, link(`#/audit?${next}`, 'older »')) : null,
    ];
  });
  return [h('h1', {}, 'Audit log'), verify, filters, list];
}

async function findings(_params, query) {
  const filters = h(
    'form',
    { class: 'filters' },
    select('state', 'State', [['', 'any'], ['open', 'open'], ['acknowledged', 'acknowledged']], query.state || ''),
    field('tenant', 'Tenant', h('input', { value: query.tenant || '' })),
    h('button', { type: 'submit' }, 'Filter'),
  );
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (v) next.set(k, v);
    go(`#/findings?${next}`);
  });
  const list = section(async () => {
    const page = await get('/v1/findings', { ...query, limit: 50 });
    return table(
      [
        { title: 'Severity', cell: (f) => badge(f.severity) },
        { title: 'Kind', cell: (f) => f.kind },
        { title: 'Summary', cell: (f) => f.summary },
        { title: 'Tenant', cell: (f) => tenantLink(f.tenant) },
        { title: 'Principal', cell: (f) => h('code', {}, f.principal) },
        { title: 'Seen', num: true, cell: (f) => `${num(f.count)}×` },
        { title: 'Last', cell: (f) => time(f.last_seen) },
        { title: 'State', cell: (f) => badge(f.state) },
        {
          title: '',
          cell: (f) => {
            if (f.state !== 'open') return h('span', { class: 'muted' }, f.acknowledged_by || '');
            const out = h('span');
            const button = h('button', { class: 'secondary' }, 'Acknowledge');
            button.addEventListener('click', () => act(button, out, () => api('POST', `/v1/findings/${encodeURIComponent(f.id)}/acknowledge`, { body: {} }), render));
            return h('span', {}, button, out);
          },
        },
      ],
      page.items,
      { empty: 'No findings.', testid: 'findings' },
    );
  });
  return [h('h1', {}, 'Security findings'), filters, list];
}

async function costs() {
  const report = await get('/v1/costs');
  const money = (amount, currency) => `${amount} ${currency || ''}`;
  const topCost = [...report.tenants].sort((a, b) => Number(b.cost) - Number(a.cost)).slice(0, 15);
  return [
    h('h1', {}, 'Costs and margins'),
    h('p', { class: 'muted' }, `From ${time(report.from)} to ${time(report.to)} (${num(report.hours)} hours).`),
    h('div', { class: 'card' }, h('h2', {}, 'Tiers'), table(
      [
        { title: 'Tier', cell: (t) => h('b', {}, t.tier) },
        { title: 'Tenants', num: true, cell: (t) => num(t.tenants) },
        { title: 'Cost', num: true, cell: (t) => money(t.cost, t.currency) },
        { title: 'Price', num: true, cell: (t) => money(t.price, t.currency) },
        { title: 'Marginal cost of one more', num: true, cell: (t) => money(t.marginal_cost, t.currency) },
      ],
      report.tiers,
      { testid: 'cost-tiers' },
    )),
    h('div', { class: 'card' }, h('h2', {}, 'Most costly tenants'), barChart(topCost.map((t) => ({ label: t.tenant, value: Number(t.cost) })), (v) => v.toFixed(2))),
    h('div', { class: 'card' }, h('h2', {}, 'Domains'), table(
      [
        { title: 'Domain', cell: (d) => d.domain },
        { title: 'Cost', num: true, cell: (d) => money(d.cost, d.currency) },
        { title: 'Rule', cell: (d) => (typeof d.rule === 'string' ? d.rule : JSON.stringify(d.rule)) },
        { title: 'Tenants', num: true, cell: (d) => num(d.tenants) },
        { title: 'Stored', num: true, cell: (d) => bytes(d.bytes) },
      ],
      report.domains,
    )),
    h('div', { class: 'card' }, h('h2', {}, 'Tenants'), table(
      [
        { title: 'Tenant', cell: (t) => tenantLink(t.tenant) },
        { title: 'Tier', cell: (t) => t.tier },
        { title: 'Domain', cell: (t) => t.domain },
        { title: 'Cost', num: true, cell: (t) => money(t.cost, t.cost_currency) },
        { title: 'Price', num: true, cell: (t) => money(t.price, t.price_currency) },
        { title: 'Margin', num: true, cell: (t) => t.margin ?? '—' },
        { title: 'Requests', num: true, cell: (t) => num(t.requests) },
        { title: 'Stored', num: true, cell: (t) => bytes(t.bytes) },
      ],
      report.tenants,
      { testid: 'cost-tenants' },
    )),
  ];
}

// ---------------------------------------------------------------------------------------
// Signing in, the frame and the router

function signin(problem) {
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'off', required: true, 'data-testid': 'key', placeholder: 'bk_…' });
  const form = h(
    'form',
    { class: 'card signin', 'data-testid': 'signin' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'With a platform key (admin or operator). The key stays in this tab only and is sent as a bearer header; close the tab or sign out to forget it.'),
    problem ? errorBox(problem) : null,
    h('label', {}, 'Platform key', input),
    h('p', {}, h('button', { type: 'submit' }, 'Sign in')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    state.key = input.value.trim();
    sessionStorage.setItem(KEY, state.key);
    state.me = null;
    render();
  });
  document.getElementById('nav').replaceChildren();
  document.getElementById('who').replaceChildren();
  document.getElementById('main').replaceChildren(form);
  input.focus();
}

function signout() {
  sessionStorage.removeItem(KEY);
  state.key = null;
  state.me = null;
  go('#/');
}

const PAGES = [
  [/^\/$/, overview, 'Overview'],
  [/^\/tenants$/, tenants, 'Tenants'],
  [/^\/tenants\/([^/]+)$/, tenantPage, null],
  [/^\/tenants\/([^/]+)\/records$/, records, null],
  [/^\/platform$/, platform, 'Tiers & domains'],
  [/^\/collections$/, collections, 'Collections'],
  [/^\/moves$/, moves, 'Moves'],
  [/^\/audit$/, audit, 'Audit'],
  [/^\/findings$/, findings, 'Findings'],
  [/^\/costs$/, costs, 'Costs'],
];
const NAV = [['#/', 'Overview'], ['#/tenants', 'Tenants'], ['#/platform', 'Tiers & domains'], ['#/collections', 'Collections'], ['#/moves', 'Moves'], ['#/audit', 'Audit'], ['#/findings', 'Findings'], ['#/costs', 'Costs']];

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function render() {
  state.seq += 1;
  for (const timer of state.timers) clearTimeout(timer);
  state.timers = [];
  if (!state.key) return signin();
  if (!state.me) {
    try {
      state.me = (await get('/v1/me'));
    } catch (error) {
      sessionStorage.removeItem(KEY);
      state.key = null;
      return signin(error);
    }
    if (!state.me.kind.startsWith('platform_')) {
      sessionStorage.removeItem(KEY);
      state.key = null;
      state.me = null;
      return signin(new Error('The console needs a platform key (admin or operator); tenant keys and tokens use the API directly.'));
    }
  }
  const [path, search] = (location.hash.slice(1) || '/').split('?');
  const query = Object.fromEntries(new URLSearchParams(search || ''));
  const base = `#${path.split('/').slice(0, 2).join('/')}`;
  document.getElementById('nav').replaceChildren(...NAV.map(([href, text]) => h('a', { href, class: href === base || (href === '#/' && base === '#/') ? 'active' : null }, text)));
  const role = state.me.kind === 'platform_admin' ? 'admin' : 'operator';
  document.getElementById('who').replaceChildren(h('span', { 'data-testid': 'role' }, `${state.me.actor} · ${role}`), h('button', { class: 'secondary', onclick: signout, 'data-testid': 'signout' }, 'Sign out'));
  const main = document.getElementById('main');
  const page = PAGES.find(([pattern]) => pattern.test(path));
  if (!page) {
    main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', link('#/', 'Back to the overview.')));
    return;
  }
  const params = path.match(page[0]).slice(1).map(decodeURIComponent);
  const seq = state.seq;
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await page[1](params, query);
    if (seq === state.seq) main.replaceChildren(...[content].flat(Infinity).filter(Boolean));
  } catch (error) {
    if (seq === state.seq) main.replaceChildren(errorBox(error));
  }
  document.title = `${page[2] || decodeURIComponent(path.split('/')[2] || '')} · Bulkhead console`;
}

window.addEventListener('hashchange', render);
render();
