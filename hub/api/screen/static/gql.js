// The public GraphQL API, nothing else: POST /graphql for queries and mutations, and a small
// graphql-transport-ws client for subscriptions (the token travels in connection_init, since a
// browser cannot set headers on a WebSocket). Reconnects with backoff; each subscription resumes
// through the variables its owner gives on (re)subscribe (afterPosition for caseChanged).

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join('; '));
    this.errors = errors;
    this.code = errors[0]?.extensions?.code || 'ERROR';
  }
}

export async function gql(token, query, variables = {}) {
  const res = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  if (res.status === 401 || res.status === 403) throw new GraphQLError([{ message: 'unauthorised', extensions: { code: 'UNAUTHENTICATED' } }]);
  const body = await res.json();
  if (body.errors?.length) throw new GraphQLError(body.errors);
  return body.data;
}

export class Live {
  /** onStatus(connected: boolean, ack: object|null); onRejected(reason) when the token is refused. */
  constructor(token, { onStatus = () => {}, onRejected = () => {} } = {}) {
    this.token = token;
    this.onStatus = onStatus;
    this.onRejected = onRejected;
    this.subs = new Map(); // id → {query, variables: () => object, next}
    this.seq = 0;
    this.ws = null;
    this.ready = false;
    this.backoff = 500;
    this.closed = false;
    this.connect();
  }

  connect() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
    const ws = new WebSocket(url, 'graphql-transport-ws');
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${this.token}` } }));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === 'connection_ack') {
        this.ready = true;
        this.backoff = 500;
        this.onStatus(true, msg.payload || null);
        for (const id of this.subs.keys()) this.start(id);
      } else if (msg.type === 'next') {
        const sub = this.subs.get(msg.id);
        if (sub && msg.payload?.data) sub.next(msg.payload.data);
      } else if (msg.type === 'error') {
        console.warn('subscription error', msg.id, msg.payload);
      } else if (msg.type === 'ping') {
        ws.send(JSON.stringify({ type: 'pong' }));
      }
    };
    ws.onclose = (ev) => {
      this.ready = false;
      this.onStatus(false, null);
      if (ev.code === 4403 || ev.code === 4401) { this.onRejected(ev.reason || 'token refused'); return; }
      if (!this.closed) setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    };
  }

  start(id) {
    const sub = this.subs.get(id);
    if (!sub || !this.ready) return;
    this.ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query: sub.query, variables: sub.variables() } }));
  }

  subscribe(query, variables, next) {
    const id = String(++this.seq);
    this.subs.set(id, { query, variables, next });
    this.start(id);
    return () => {
      this.subs.delete(id);
      if (this.ready) this.ws.send(JSON.stringify({ id, type: 'complete' }));
    };
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}
