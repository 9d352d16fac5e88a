// Three devices on one INBOX with ImapFlow (a real QRESYNC client library):
// A syncs and goes offline; B appends, flags and deletes; C idles and tracks
// what it hears; A comes back with SELECT (QRESYNC ...) and applies the
// VANISHED and FETCH it gets. All three must end with the server's state.
import { ImapFlow } from 'imapflow';
const port = Number(process.argv[2]);
const opts = (qresync) => ({ host: '127.0.0.1', port, secure: false, auth: { user: 'u', pass: 'p' }, logger: false, qresync, doSTARTTLS: false, tls: { rejectUnauthorized: false } });
const state = async (c) => {
  const m = new Map();
  if (c.mailbox.exists) for await (const msg of c.fetch('1:*', { uid: true, flags: true })) m.set(msg.uid, [...msg.flags].sort().join(' '));
  return m;
};
const show = (m) => [...m.entries()].sort((a, b) => a[0] - b[0]).map(([u, f]) => `${u}:${f}`).join(', ');

const a = new ImapFlow(opts(true)); await a.connect();
const boxA = await a.mailboxOpen('INBOX');
const known = await state(a);
const [uidValidity, modseq] = [boxA.uidValidity, boxA.highestModseq];
await a.logout();

const c = new ImapFlow(opts(true)); await c.connect();
await c.mailboxOpen('INBOX');
const seen = await state(c);
c.on('expunge', (e) => { if (e.uid) seen.delete(e.uid); });
c.on('flags', (e) => { if (e.uid) seen.set(e.uid, [...e.flags].sort().join(' ')); });
c.on('exists', () => {});
const idling = c.idle();

const b = new ImapFlow(opts(false)); await b.connect();
await b.mailboxOpen('INBOX');
const added = [];
for (let i = 0; i < 3; i++) added.push((await b.append('INBOX', `Subject: device test ${Date.now()} ${i}\r\n\r\nhello\r\n`)).uid);
await b.messageFlagsAdd({ uid: added[0] }, ['\\Flagged'], { uid: true });
const firstKnown = [...known.keys()][0];
if (firstKnown) await b.messageFlagsAdd(String(firstKnown), ['\\Seen', '$Label1'], { uid: true });
await b.messageDelete(`${added[1]}${known.size > 1 ? ',' + [...known.keys()][1] : ''}`, { uid: true });
const server = await state(b);
await b.logout();

await new Promise((r) => setTimeout(r, 500));
await c.noop();
// C learns new messages by fetching what it does not know yet.
for await (const msg of c.fetch('1:*', { uid: true, flags: true })) if (!seen.has(msg.uid)) seen.set(msg.uid, [...msg.flags].sort().join(' '));
await c.logout();

const a2 = new ImapFlow(opts(true)); await a2.connect();
const resync = new Map(known);
let vanished = 0, changed = 0;
a2.on('expunge', (e) => { if (e.uid) { resync.delete(e.uid); vanished++; } });
a2.on('flags', (e) => { if (e.uid) { resync.set(e.uid, [...e.flags].sort().join(' ')); changed++; } });
const boxA2 = await a2.mailboxOpen('INBOX', { uidValidity, changedSince: modseq });
// New messages come as FETCH (flags) too; any UID above the old UIDNEXT not seen yet is fetched.
for await (const msg of a2.fetch(`${boxA.uidNext}:*`, { uid: true, flags: true }, { uid: true })) if (!resync.has(msg.uid)) resync.set(msg.uid, [...msg.flags].sort().join(' '));
await a2.logout();

console.log(`A resynced with QRESYNC: ${vanished} vanished, ${changed} changed (qresync used: ${boxA2.qresync ?? 'n/a'})`);
for (const [name, m] of [['server', server], ['C (idle)', seen], ['A (QRESYNC)', resync]]) console.log(`${name.padEnd(12)} ${m.size} messages: ${show(m).slice(0, 160)}${m.size > 8 ? ' ...' : ''}`);
const same = show(server) === show(seen) && show(server) === show(resync);
console.log(same ? 'all three the same' : 'DIFFERENT');
process.exit(same ? 0 : 1);
