// Labels: Chinese by default, English on the switch (kept in localStorage).

const zh = {
  title: '城市运行一屏统管', live: '实时', rewound: '回放', connected: '已连接', disconnected: '未连接', logout: '退出',
  'kpi.reported': '今日上报', 'kpi.open': '在办', 'kpi.overdue': '超期', 'kpi.closed': '今日结案',
  'kpi.ontime': '按期结案率', 'kpi.satisfaction': '满意度',
  departments: '部门态势', stages: '案件阶段', categories: '高发类别', heat: '网格热力', up: '返回上级', trend: '实时走势',
  feed: '案件动态', 'tab.overdue': '超期', 'tab.escalated': '督办', 'tab.registered': '待派遣', search: '案件编号/标题/地址',
  rewind: '时间回溯', backToLive: '回到实时', tokenLabel: '访问令牌', enter: '进入',
  tokenHint: '令牌由管理员发放（api_tokens.toml）。开发令牌：dev-screen（大屏）、dev-operator（坐席）。',
  escalatedSub: '督办中', registeredSub: '立案', ratioSub: '结案', satisfactionSub: '满意率', openSub: '实时在办',
  overdueSub: '超期率', reportedSub: '累计', case: '案件', caseref: '部门编号', stage: '阶段', origin: '上报部门',
  responsible: '责任部门', category: '类别', priority: '优先级', grid: '网格', address: '地址', reportedAt: '上报时间',
  due: '办理时限', reporter: '报告人', masked: '已脱敏', timeline: '完整时间线', links: '关联案件', none: '无',
  actions: '坐席操作', dispatch: '派遣', verifyPass: '核查通过', verifyFail: '核查不通过', close: '结案', escalate: '督办',
  register: '立案', reason: '原因', note: '备注', done: '已完成', historyNeedsRole: '当前角色无权查看历史案件列表（需 history:read）',
  empty: '暂无', cases: '件', notFound: '未找到案件', reported: '上报', open: '在办', street: '街道', community: '社区',
  readOnly: '只读（大屏角色）', refused: '令牌无效', reporting: '上报量', openLine: '在办量',
};

const en = {
  title: 'City Operations · One Screen', live: 'LIVE', rewound: 'REWOUND', connected: 'connected', disconnected: 'offline', logout: 'Log out',
  'kpi.reported': 'Reported today', 'kpi.open': 'Open', 'kpi.overdue': 'Overdue', 'kpi.closed': 'Closed today',
  'kpi.ontime': 'On-time rate', 'kpi.satisfaction': 'Satisfaction',
  departments: 'Departments', stages: 'Stages', categories: 'Top categories', heat: 'Grid heat', up: 'Up', trend: 'Live trend',
  feed: 'Live case feed', 'tab.overdue': 'Overdue', 'tab.escalated': 'Escalated', 'tab.registered': 'To dispatch', search: 'caseref / title / address',
  rewind: 'Rewind', backToLive: 'Back to live', tokenLabel: 'Access token', enter: 'Enter',
  tokenHint: 'Tokens are issued by the administrator (api_tokens.toml). Development tokens: dev-screen (wall), dev-operator (operator).',
  escalatedSub: 'escalated', registeredSub: 'registered', ratioSub: 'closed', satisfactionSub: 'satisfied', openSub: 'open now',
  overdueSub: 'overdue rate', reportedSub: 'total', case: 'Case', caseref: 'Caseref', stage: 'Stage', origin: 'Reported by',
  responsible: 'Responsible', category: 'Category', priority: 'Priority', grid: 'Grid', address: 'Address', reportedAt: 'Reported',
  due: 'Due', reporter: 'Reporter', masked: 'masked', timeline: 'Full timeline', links: 'Linked cases', none: 'none',
  actions: 'Operator actions', dispatch: 'Dispatch', verifyPass: 'Verify: pass', verifyFail: 'Verify: fail', close: 'Close', escalate: 'Escalate',
  register: 'Register', reason: 'reason', note: 'note', done: 'done', historyNeedsRole: 'This role may not list past cases (needs history:read)',
  empty: 'none', cases: '', notFound: 'case not found', reported: 'reported', open: 'open', street: 'street', community: 'community',
  readOnly: 'read-only (screen role)', refused: 'token refused', reporting: 'reported', openLine: 'open',
};

const stagesZh = { REPORTED: '上报', REGISTERED: '立案', REJECTED: '不予立案', MERGED: '合并', DISPATCHED: '派遣', ACCEPTED: '受理',
  HANDLED: '处置', VERIFIED: '核查', CLOSED: '结案', EVALUATED: '评价' };
const eventsZh = { reported: '上报', registered: '立案', rejected: '不予立案', dispatched: '派遣', accepted: '受理', returned: '退回',
  handled: '处置', verified: '核查', reworked: '返工', closed: '结案', evaluated: '评价', escalated: '督办', extended: '延期',
  linked: '关联', merged: '合并', sla_breached: '超期', suspended: '挂起', resumed: '恢复', updated: '更新', reopened: '重办' };
const deptZh = { water: '水务', gardens: '园林绿化', sanitation: '环卫', municipal: '市政', street_office: '街道办',
  market_supervision: '市场监管', emergency_120: '120急救', cdc: '疾控', command: '指挥中心' };
const priorityZh = { URGENT: '特急', HIGH: '紧急', NORMAL: '一般', LOW: '低' };

let lang = localStorage.getItem('screen.lang') || 'zh';
const departments = new Map(); // code → {name, nameEn}

export const getLang = () => lang;
export function setLang(next) { lang = next; localStorage.setItem('screen.lang', next); }
export function t(key) { return (lang === 'zh' ? zh : en)[key] ?? key; }
export function setDepartments(list) { for (const d of list) departments.set(d.code, d); }
export function deptName(code) {
  const d = departments.get(code);
  if (d) return lang === 'zh' ? d.name : d.nameEn;
  return lang === 'zh' ? (deptZh[code] || code) : code.replace(/_/g, ' ');
}
export function stageName(s) { const k = String(s).toUpperCase(); return lang === 'zh' ? (stagesZh[k] || s) : k.toLowerCase(); }
export function eventName(e) { return lang === 'zh' ? (eventsZh[e] || e) : e.replace(/_/g, ' '); }
export function priorityName(p) { return lang === 'zh' ? (priorityZh[p] || p) : (p || '').toLowerCase(); }

export function applyStatic(root = document) {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-ph]')) el.placeholder = t(el.dataset.i18nPh);
}
