// 一屏统管: the command-centre screen. Everything comes from the public GraphQL API (graphql/schema.graphql):
// queries over POST /graphql, live updates over graphql-transport-ws, the past through `asOf`.
// The grid polygons come from /screen/grids.geojson (the API's `grids` gives the tree, not geometry).
import { gql, Live, GraphQLError } from './gql.js';
import { t, getLang, setLang, applyStatic, setDepartments, deptName, stageName, eventName, priorityName } from './i18n.js';

const echarts = window.echarts;
const $ = (sel) => document.querySelector(sel);
const DAY_MS = 86400000;
const CN_OFFSET_MS = 8 * 3600000; // the city's day starts at 00:00 China time (no DST)

const TOTALS = 'reported registered open overdue escalated closed closedOnTime';
const OVERVIEW_FIELDS = `scopeGrid now position totals { ${TOTALS} } byDepartment { key cases } byStage { key cases }
  byCategory { key cases } indicators { key name value numerator denominator unit }
  children { grid name level totals { ${TOTALS} } }`;
const Q_OVERVIEW = `query Overview($scope: ScopeInput, $window: WindowInput, $asOf: DateTime) {
  overview(scope: $scope, window: $window, asOf: $asOf) { ${OVERVIEW_FIELDS} } }`;
const S_OVERVIEW = `subscription OverviewChanged($scope: ScopeInput, $window: WindowInput) {
  overviewChanged(scope: $scope, window: $window) { ${OVERVIEW_FIELDS} } }`;
const S_CASES = `subscription CaseChanged($afterPosition: Int) { caseChanged(afterPosition: $afterPosition) {
  position event { position type at department stageAfter } case { id caseref title stage originDepartment } } }`;
const Q_REFERENCE = `query Reference { grids { code name level parent } departments { code name nameEn kinds } }`;
const Q_CASES = `query Cases($filter: CaseFilterInput, $first: Int!, $asOf: DateTime) {
  cases(filter: $filter, first: $first, asOf: $asOf) { position edges { node {
    id caseref title stage reportedAt due overdue escalations originDepartment grid } } } }`;
const Q_CASE = `query CaseDetail($id: ID!) { case(id: $id) {
  id source caseref kind originDepartment responsibleDepartments category priority title grid gridPath address stage
  reportedAt due overdue escalations version allowedActions reporter { name phone masked }
  timeline { position version type at actor department stageAfter note }
  links { relation targetId targetDepartment at target { id caseref originDepartment stage title } } } }`;
const AFTER = 'id caseref stage version allowedActions';
const M = {
  register: `mutation($id: ID!, $v: Int) { register(id: $id, expectedVersion: $v) { ${AFTER} } }`,
  dispatch: `mutation($id: ID!, $d: [String!]!, $v: Int) { dispatch(id: $id, departments: $d, note: "一屏统管派遣", expectedVersion: $v) { ${AFTER} } }`,
  verifyPass: `mutation($id: ID!, $v: Int) { verify(id: $id, passed: true, expectedVersion: $v) { ${AFTER} } }`,
  verifyFail: `mutation($id: ID!, $v: Int) { verify(id: $id, passed: false, note: "核查不通过", expectedVersion: $v) { ${AFTER} } }`,
  close: `mutation($id: ID!, $v: Int) { close(id: $id, expectedVersion: $v) { ${AFTER} } }`,
  escalate: `mutation($id: ID!, $r: String!, $v: Int) { escalate(id: $id, reason: $r, expectedVersion: $v) { ${AFTER} } }`,
};

const state = {
  token: null, role: null, live: null, unsubOverview: null,
  root: null, path: [], // [{code, name, level}] from the district down
  geo: null, registered: new Set(), departments: [],
  asOf: null, overview: null, trend: [], feed: [], lastPosition: null,
  tab: 'overdue', gridFilter: null, openCase: null, worklistTimer: null,
};
const charts = {};

// ------------------------------------------------------------------ time
const dayStart = (ms) => Math.floor((ms + CN_OFFSET_MS) / DAY_MS) * DAY_MS - CN_OFFSET_MS;
const iso = (ms) => new Date(ms).toISOString();
const hhmmss = (v) => new Date(new Date(v).getTime() + CN_OFFSET_MS).toISOString().slice(11, 19);
const dateTime = (v) => (v ? new Date(new Date(v).getTime() + CN_OFFSET_MS).toISOString().slice(0, 19).replace('T', ' ') : '–');
function windowAt(ms) { return { since: iso(dayStart(ms)), until: state.asOf ? iso(ms) : null }; }
const scopeVar = () => ({ grid: state.path.at(-1)?.code ?? null });

// ------------------------------------------------------------------ start
function readToken() {
  const params = new URLSearchParams(location.search);
  if (params.get('token')) {
    sessionStorage.setItem('hub.token', params.get('token'));
    params.delete('token');
    history.replaceState(null, '', location.pathname + (params.toString() ? `?${params}` : ''));
  }
  return sessionStorage.getItem('hub.token');
}

function showLogin(message = '') {
  $('#login').classList.remove('hidden');
  $('#login-error').textContent = message;
  $('#token-input').focus();
}

async function start() {
  applyStatic();
  $('#lang').textContent = getLang() === 'zh' ? 'EN' : '中文';
  wireControls();
  state.token = readToken();
  if (!state.token) { showLogin(); return; }
  try {
    const ref = await gql(state.token, Q_REFERENCE);
    state.departments = ref.departments;
    setDepartments(ref.departments);
    state.root = ref.grids[0] || null;
    state.path = state.root ? [state.root] : [];
  } catch (e) {
    sessionStorage.removeItem('hub.token');
    showLogin(e instanceof GraphQLError ? `${t('refused')}: ${e.message}` : String(e));
    return;
  }
  $('#login').classList.add('hidden');
  initCharts();
  fetch('/screen/grids.geojson').then((r) => r.json()).then((g) => { state.geo = g; renderMap(); });
  state.live = new Live(state.token, {
    onStatus: (up, ack) => {
      $('#conn').className = `badge ${up ? 'on' : 'off'}`;
      $('#conn').textContent = t(up ? 'connected' : 'disconnected');
      if (ack?.role) setRole(ack.role);
    },
    onRejected: (reason) => { sessionStorage.removeItem('hub.token'); showLogin(`${t('refused')}: ${reason}`); },
  });
  await loadOverview();
  state.lastPosition = state.overview?.position ?? null;
  state.live.subscribe(S_CASES, () => ({ afterPosition: state.lastPosition }), onCaseChange);
  resubscribeOverview();
  loadWorklist();
  setInterval(tick, 1000);
  tick();
}

function setRole(role) {
  state.role = role;
  document.body.dataset.role = role;
  $('#role').textContent = role;
  if (state.openCase) openCase(state.openCase);
}

function wireControls() {
  $('#login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('hub.token', $('#token-input').value.trim());
    location.reload();
  });
  $('#logout').addEventListener('click', () => { sessionStorage.removeItem('hub.token'); location.reload(); });
  $('#lang').addEventListener('click', () => {
    setLang(getLang() === 'zh' ? 'en' : 'zh');
    $('#lang').textContent = getLang() === 'zh' ? 'EN' : '中文';
    applyStatic();
    rerenderAll();
  });
  $('#up').addEventListener('click', () => { if (state.path.length > 1) setScope(state.path.length - 2); });
  $('#slider').addEventListener('input', () => { $('#slider-label').textContent = sliderLabel(); });
  $('#slider').addEventListener('change', onSlider);
  $('#live').addEventListener('click', () => setAsOf(null));
  $('#drawer-close').addEventListener('click', () => { $('#drawer').classList.add('hidden'); state.openCase = null; });
  for (const b of document.querySelectorAll('.tab')) {
    b.addEventListener('click', () => {
      state.tab = b.dataset.tab;
      for (const x of document.querySelectorAll('.tab')) x.classList.toggle('active', x === b);
      loadWorklist();
    });
  }
  let searchTimer = null;
  $('#search').addEventListener('input', () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadWorklist, 300); });
  window.addEventListener('resize', () => Object.values(charts).forEach((c) => c.resize()));
}

// ------------------------------------------------------------------ overview
async function loadOverview() {
  const at = state.asOf ?? Date.now();
  try {
    const data = await gql(state.token, Q_OVERVIEW, { scope: scopeVar(), window: windowAt(at), asOf: state.asOf ? iso(state.asOf) : null });
    renderOverview(data.overview);
  } catch (e) { toast(e.message); }
}

function resubscribeOverview() {
  state.unsubOverview?.();
  const scope = scopeVar();
  const window = { since: iso(dayStart(Date.now())) };
  state.unsubOverview = state.live.subscribe(S_OVERVIEW, () => ({ scope, window }), (data) => {
    if (state.asOf === null) renderOverview(data.overviewChanged);
  });
}

function renderOverview(o) {
  const prev = state.overview;
  state.overview = o;
  document.body.dataset.position = o.position;
  const tot = o.totals;
  const ind = Object.fromEntries(o.indicators.map((i) => [i.key, i]));
  const pct = (x) => (x === null || x === undefined || Number.isNaN(x) ? '–' : `${(x * 100).toFixed(1)}%`);
  const ontime = tot.closed ? tot.closedOnTime / tot.closed : null;
  const sat = ind.satisfaction_mean?.value;
  setKpi('reported', tot.reported, tot.reported, `${t('registeredSub')} ${tot.registered}`, prev?.totals.reported);
  setKpi('open', tot.open, tot.open, `${t('escalatedSub')} ${tot.escalated}`, prev?.totals.open);
  setKpi('overdue', tot.overdue, tot.overdue, `${t('overdueSub')} ${pct(ind.overdue_rate?.value)}`, prev?.totals.overdue);
  setKpi('closed', tot.closed, tot.closed, `${t('ratioSub')} ${pct(ind.closure_rate?.value)}`, prev?.totals.closed);
  setKpi('ontime', ontime, pct(ontime), `${tot.closedOnTime} / ${tot.closed}`);
  setKpi('satisfaction', sat, sat === null || sat === undefined ? '–' : `${sat.toFixed(2)}`, `${t('satisfactionSub')} ${pct(ind.satisfaction_rate?.value)}`);
  if (state.asOf === null) {
    state.trend.push([Date.now(), tot.reported, tot.open]);
    if (state.trend.length > 600) state.trend.shift();
  }
  renderDepartments();
  renderCharts();
  renderMap();
  if (prev && prev.position !== o.position && state.asOf === null) scheduleWorklist();
}

function setKpi(key, raw, shown, sub, before) {
  const el = document.querySelector(`.kpi[data-kpi="${key}"]`);
  const v = el.querySelector('.k-value');
  v.textContent = typeof shown === 'number' ? shown.toLocaleString('en-US') : shown;
  v.dataset.value = raw ?? '';
  el.querySelector('.k-sub').textContent = sub;
  if (before !== undefined && before !== raw) { el.classList.remove('flash'); void el.offsetWidth; el.classList.add('flash'); }
}

function renderDepartments() {
  const o = state.overview;
  if (!o) return;
  const box = $('#depts');
  box.replaceChildren(...o.byDepartment.slice(0, 12).map((d) => {
    const div = document.createElement('div');
    div.className = 'dept';
    div.dataset.dept = d.key;
    div.innerHTML = `<div class="d-name"></div><div class="d-val"></div>`;
    div.querySelector('.d-name').textContent = deptName(d.key);
    div.querySelector('.d-val').textContent = d.cases.toLocaleString('en-US');
    return div;
  }));
}

// ------------------------------------------------------------------ charts
const AXIS = { axisLine: { lineStyle: { color: '#1c3a6b' } }, axisLabel: { color: '#8fb0d9' }, splitLine: { lineStyle: { color: '#12284d' } } };
const PALETTE = ['#22d3ee', '#34d399', '#fbbf24', '#f87171', '#a78bfa', '#60a5fa', '#f472b6', '#4ade80', '#fb923c', '#94a3b8'];

function initCharts() {
  for (const [key, id] of [['stage', 'chart-stage'], ['category', 'chart-category'], ['map', 'chart-map'], ['trend', 'chart-trend']]) {
    charts[key] = echarts.init(document.getElementById(id), null, { renderer: 'canvas' });
  }
  charts.map.on('click', (p) => {
    const child = state.overview?.children.find((c) => c.grid === p.name);
    if (!child) return;
    if (child.level === 'grid') { state.gridFilter = child; loadWorklist(); toast(`${t('grid')}: ${child.name}`); return; }
    state.path.push({ code: child.grid, name: child.name, level: child.level });
    setScope(state.path.length - 1);
  });
}

function renderCharts() {
  const o = state.overview;
  if (!o) return;
  charts.stage.setOption({
    color: PALETTE, tooltip: { trigger: 'item' },
    series: [{ type: 'pie', radius: ['45%', '75%'], center: ['50%', '52%'], itemStyle: { borderColor: '#0a1630', borderWidth: 2 },
      label: { color: '#cfe3ff', fontSize: 11 },
      data: o.byStage.map((s) => ({ name: stageName(s.key), value: s.cases })) }],
  }, true);
  const cats = o.byCategory.slice(0, 8).reverse();
  charts.category.setOption({
    grid: { left: 60, right: 30, top: 6, bottom: 18 }, tooltip: {},
    xAxis: { type: 'value', ...AXIS }, yAxis: { type: 'category', data: cats.map((c) => c.key), ...AXIS },
    series: [{ type: 'bar', data: cats.map((c) => c.cases), barWidth: '60%', label: { show: true, position: 'right', color: '#cfe3ff' },
      itemStyle: { color: new echarts.graphic.LinearGradient(0, 0, 1, 0, [{ offset: 0, color: '#0e7490' }, { offset: 1, color: '#22d3ee' }]) } }],
  }, true);
  charts.trend.setOption({
    color: ['#22d3ee', '#fbbf24'], tooltip: { trigger: 'axis' },
    legend: { data: [t('reporting'), t('openLine')], textStyle: { color: '#8fb0d9' }, right: 10, top: 0 },
    grid: { left: 50, right: 20, top: 24, bottom: 22 },
    xAxis: { type: 'time', ...AXIS, axisLabel: { color: '#8fb0d9', formatter: '{HH}:{mm}:{ss}' }, splitLine: { show: false } }, yAxis: { type: 'value', scale: true, ...AXIS },
    series: [
      { name: t('reporting'), type: 'line', showSymbol: false, areaStyle: { opacity: 0.15 }, data: state.trend.map((p) => [p[0], p[1]]) },
      { name: t('openLine'), type: 'line', showSymbol: false, data: state.trend.map((p) => [p[0], p[2]]) },
    ],
  }, true);
}

function renderMap() {
  const o = state.overview;
  const scope = state.path.at(-1);
  $('#scope-name').textContent = scope?.name ?? '';
  renderCrumbs();
  if (!o || !state.geo || !scope) return;
  const mapName = `scope-${scope.code}`;
  if (!state.registered.has(mapName)) {
    const features = state.geo.features.filter((f) => f.properties.parent === scope.code);
    echarts.registerMap(mapName, { type: 'FeatureCollection', features });
    state.registered.add(mapName);
  }
  const names = Object.fromEntries(o.children.map((c) => [c.grid, c.name]));
  const values = o.children.map((c) => c.totals.reported);
  charts.map.setOption({
    tooltip: { trigger: 'item', formatter: (p) => {
      const c = o.children.find((x) => x.grid === p.name);
      return c ? `${c.name}<br>${t('reported')} ${c.totals.reported}<br>${t('open')} ${c.totals.open}<br>${t('kpi.overdue')} ${c.totals.overdue}` : p.name;
    } },
    visualMap: { min: 0, max: Math.max(1, ...values), calculable: true, left: 10, bottom: 10, textStyle: { color: '#8fb0d9' },
      inRange: { color: ['#0b2a4a', '#0e7490', '#22d3ee', '#fbbf24', '#f87171'] } },
    series: [{ type: 'map', map: mapName, nameProperty: 'code', roam: true, selectedMode: false,
      label: { show: scope.level !== 'community', color: '#e8f4ff', fontSize: 11, formatter: (p) => names[p.name] || '' },
      itemStyle: { borderColor: '#5eead4', borderWidth: 0.6, areaColor: '#0b2a4a' },
      emphasis: { label: { show: true, color: '#fff' }, itemStyle: { areaColor: '#a78bfa' } },
      data: o.children.map((c) => ({ name: c.grid, value: c.totals.reported })) }],
  }, true);
}

function renderCrumbs() {
  const nav = $('#crumbs');
  nav.replaceChildren(...state.path.map((p, i) => {
    const a = document.createElement('a');
    a.textContent = p.name;
    a.dataset.grid = p.code;
    a.addEventListener('click', () => setScope(i));
    return a;
  }));
}

function setScope(index) {
  state.path = state.path.slice(0, index + 1);
  state.gridFilter = null;
  state.trend = [];
  resubscribeOverview();
  loadOverview();
  loadWorklist();
}

// ------------------------------------------------------------------ live feed
function onCaseChange(data) {
  const ch = data.caseChanged;
  state.lastPosition = Math.max(state.lastPosition ?? 0, ch.position);
  state.feed.unshift(ch);
  if (state.feed.length > 60) state.feed.pop();
  const li = feedItem(ch);
  li.classList.add('new');
  const list = $('#feed');
  list.prepend(li);
  while (list.children.length > 60) list.lastChild.remove();
  if (state.openCase && ch.case?.id === state.openCase) openCase(state.openCase);
}

function feedItem(ch) {
  const li = document.createElement('li');
  li.dataset.caseId = ch.case?.id ?? '';
  li.dataset.type = ch.event.type;
  li.innerHTML = '<span class="t"></span><span class="ev"></span><span class="txt"></span>';
  li.querySelector('.t').textContent = hhmmss(ch.event.at);
  li.querySelector('.ev').textContent = eventName(ch.event.type);
  li.querySelector('.ev').classList.add(ch.event.type);
  li.querySelector('.txt').textContent = `${deptName(ch.event.department)} · ${ch.case?.title ?? ch.case?.caseref ?? ''}`;
  li.addEventListener('click', () => ch.case && openCase(ch.case.id));
  return li;
}

// ------------------------------------------------------------------ worklists
function scheduleWorklist() {
  if (state.worklistTimer) return;
  state.worklistTimer = setTimeout(() => { state.worklistTimer = null; loadWorklist(); }, 3000);
}

async function loadWorklist() {
  const filter = { openOnly: true, grid: state.gridFilter?.grid ?? state.path.at(-1)?.code ?? null };
  if (state.tab === 'overdue') filter.overdue = true;
  if (state.tab === 'escalated') filter.escalated = true;
  if (state.tab === 'registered') filter.stage = 'REGISTERED';
  const text = $('#search').value.trim();
  if (text) filter.text = text;
  const list = $('#worklist');
  try {
    const data = await gql(state.token, Q_CASES, { filter, first: 40, asOf: state.asOf ? iso(state.asOf) : null });
    const items = data.cases.edges.map(({ node }) => {
      const li = document.createElement('li');
      li.dataset.caseId = node.id;
      li.dataset.stage = node.stage;
      li.innerHTML = '<span class="t"></span><span class="ev"></span><span class="txt"></span>';
      li.querySelector('.t').textContent = hhmmss(node.reportedAt);
      li.querySelector('.ev').textContent = stageName(node.stage) + (node.escalations ? ` ·${t('escalate')}${node.escalations}` : '');
      if (node.overdue) li.querySelector('.ev').classList.add('tag', 'over');
      li.querySelector('.txt').textContent = `${deptName(node.originDepartment)} · ${node.title}`;
      li.addEventListener('click', () => openCase(node.id));
      return li;
    });
    if (!items.length) { const li = document.createElement('li'); li.textContent = t('empty'); items.push(li); }
    list.replaceChildren(...items);
  } catch (e) {
    const li = document.createElement('li');
    li.textContent = e.code === 'FORBIDDEN' ? t('historyNeedsRole') : e.message;
    list.replaceChildren(li);
  }
}

// ------------------------------------------------------------------ case panel
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function openCase(id) {
  state.openCase = id;
  const box = $('#case');
  $('#drawer').classList.remove('hidden');
  let c;
  try { c = (await gql(state.token, Q_CASE, { id })).case; } catch (e) { box.innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
  if (state.openCase !== id) return;
  if (!c) { box.innerHTML = `<p>${t('notFound')}</p>`; return; }
  box.dataset.caseId = c.id;
  box.dataset.stage = c.stage;
  box.dataset.version = c.version;
  const rep = c.reporter ? (c.reporter.masked ? t('masked') : `${c.reporter.name ?? ''} ${c.reporter.phone ?? ''}`) : '–';
  box.innerHTML = `
    <h3>${esc(c.title)}</h3>
    <dl class="kv">
      <dt>${t('caseref')}</dt><dd class="mono">${esc(c.caseref)}</dd>
      <dt>${t('stage')}</dt><dd><span class="stage" id="case-stage">${esc(stageName(c.stage))}</span>
        ${c.overdue ? `<span class="tag over">${t('kpi.overdue')}</span>` : ''} ${c.escalations ? `${t('escalate')} ×${c.escalations}` : ''}</dd>
      <dt>${t('origin')}</dt><dd>${esc(deptName(c.originDepartment))}</dd>
      <dt>${t('responsible')}</dt><dd>${esc(c.responsibleDepartments.map(deptName).join('、') || '–')}</dd>
      <dt>${t('category')}</dt><dd>${esc(c.category)} · ${esc(priorityName(c.priority))}</dd>
      <dt>${t('grid')}</dt><dd class="mono">${esc(c.grid ?? '–')}</dd>
      <dt>${t('address')}</dt><dd>${esc(c.address ?? '–')}</dd>
      <dt>${t('reportedAt')}</dt><dd class="mono">${dateTime(c.reportedAt)}</dd>
      <dt>${t('due')}</dt><dd class="mono">${dateTime(c.due)}</dd>
      <dt>${t('reporter')}</dt><dd>${esc(rep)}</dd>
    </dl>
    <div id="case-actions"></div>
    <h2>${t('timeline')}</h2>
    <ol class="timeline">${c.timeline.map((e) => `<li data-type="${esc(e.type)}"><span class="mono">${dateTime(e.at)}</span>
      <b class="ev ${esc(e.type)}">${esc(eventName(e.type))}</b> → ${esc(stageName(e.stageAfter))}
      <div class="who">${esc(deptName(e.department))} · ${esc(e.actor)}${e.note ? ` · ${esc(e.note)}` : ''}</div></li>`).join('')}</ol>
    <h2>${t('links')}</h2>
    <ul class="links">${c.links.length ? c.links.map((l) => `<li><a href="#" data-link="${esc(l.targetId)}">${esc(l.relation)} ·
      ${esc(deptName(l.targetDepartment ?? l.target?.originDepartment ?? ''))} · ${esc(l.target?.caseref ?? l.targetId)}
      ${l.target ? `(${esc(stageName(l.target.stage))})` : ''}</a></li>`).join('') : `<li>${t('none')}</li>`}</ul>`;
  for (const a of box.querySelectorAll('[data-link]')) a.addEventListener('click', (ev) => { ev.preventDefault(); openCase(a.dataset.link); });
  renderActions(c);
}

function renderActions(c) {
  const box = $('#case-actions');
  if (state.role !== 'operator') { box.innerHTML = state.role === 'screen' ? `<p class="hint">${t('readOnly')}</p>` : ''; return; }
  const allowed = new Set(c.allowedActions);
  const parts = [`<h2>${t('actions')}</h2><div class="actions">`];
  if (allowed.has('register')) parts.push(`<button class="btn" data-act="register" type="button">${t('register')}</button>`);
  if (allowed.has('dispatch')) {
    const current = c.responsibleDepartments[0] || c.originDepartment;
    const codes = [...new Set([current, ...state.departments.map((d) => d.code)])].filter((x) => x && x !== 'command');
    parts.push(`<select id="dispatch-to">${codes.map((d) => `<option value="${esc(d)}">${esc(deptName(d))}</option>`).join('')}</select>
      <button class="btn primary" data-act="dispatch" type="button">${t('dispatch')}</button>`);
  }
  if (allowed.has('verify')) parts.push(`<button class="btn" data-act="verifyPass" type="button">${t('verifyPass')}</button>
    <button class="btn" data-act="verifyFail" type="button">${t('verifyFail')}</button>`);
  if (allowed.has('close')) parts.push(`<button class="btn" data-act="close" type="button">${t('close')}</button>`);
  if (allowed.has('escalate')) parts.push(`<input id="escalate-reason" placeholder="${t('reason')}" value="一屏统管督办">
    <button class="btn danger" data-act="escalate" type="button">${t('escalate')}</button>`);
  parts.push('</div><p class="error" id="action-error"></p>');
  box.innerHTML = parts.join('');
  for (const b of box.querySelectorAll('[data-act]')) b.addEventListener('click', () => act(c, b.dataset.act));
}

async function act(c, action) {
  const vars = { id: c.id, v: c.version };
  if (action === 'dispatch') vars.d = [$('#dispatch-to').value];
  if (action === 'escalate') vars.r = $('#escalate-reason').value || '督办';
  for (const b of document.querySelectorAll('[data-act]')) b.disabled = true;
  try {
    const data = await gql(state.token, M[action], vars);
    const after = Object.values(data)[0];
    toast(`${t(action)} ${t('done')}: ${after.caseref} → ${stageName(after.stage)}`);
  } catch (e) {
    toast(`${e.code}: ${e.message}`);
    await openCase(c.id);
    const err = $('#action-error');
    if (err) err.textContent = `${e.code}: ${e.message}`;
    return;
  }
  await openCase(c.id);
}

// ------------------------------------------------------------------ time slider (asOf)
function sliderBase() { return dayStart(state.asOf ?? Date.now()); }
function sliderLabel() {
  const s = $('#slider');
  return Number(s.value) >= Number(s.max) - 1 && state.asOf === null ? `${t('live')} ${hhmmss(Date.now())}` : dateTime(sliderBase() + Number(s.value) * 1000);
}

function onSlider() {
  const s = $('#slider');
  const value = Number(s.value);
  if (value >= Number(s.max) - 1) setAsOf(null);
  else setAsOf(dayStart(Date.now()) + value * 1000);
}

function setAsOf(ms) {
  state.asOf = ms;
  document.body.dataset.mode = ms === null ? 'live' : 'rewound';
  document.body.dataset.asOf = ms === null ? '' : iso(ms);
  $('#mode').className = `badge ${ms === null ? 'live' : 'rewind'}`;
  $('#mode').textContent = t(ms === null ? 'live' : 'rewound');
  if (ms === null) state.trend = [];
  tick();
  loadOverview();
  loadWorklist();
}

function tick() {
  const now = Date.now();
  $('#clock').textContent = dateTime(now);
  const s = $('#slider');
  const max = Math.floor((now - dayStart(now)) / 1000);
  s.max = String(max);
  if (state.asOf === null) s.value = String(max);
  $('#slider-label').textContent = sliderLabel();
}

function rerenderAll() {
  $('#mode').textContent = t(state.asOf === null ? 'live' : 'rewound');
  $('#conn').textContent = t(state.live?.ready ? 'connected' : 'disconnected');
  if (state.overview) renderOverview(state.overview);
  $('#feed').replaceChildren(...state.feed.map(feedItem));
  loadWorklist();
  if (state.openCase) openCase(state.openCase);
}

function toast(message) {
  const el = $('#toast');
  el.textContent = message;
  el.classList.remove('hidden');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.add('hidden'), 4000);
}

document.body.dataset.mode = 'live';
start();
