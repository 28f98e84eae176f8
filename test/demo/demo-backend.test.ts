import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { RawClient } from '../harness/raw-client.js';
import { DEMO_PASSWORD, DEMO_USER, startDemoBackend, type DemoBackend } from './demo-backend.js';

/** A raw POP3 client for transcripts: it reads lines exactly as they arrive on the wire. */
class Pop3Wire {
  readonly #client: RawClient;

  private constructor(client: RawClient) {
    this.#client = client;
  }

  static async connect(port: number): Promise<Pop3Wire> {
    return new Pop3Wire(await RawClient.plain('127.0.0.1', port));
  }

  /** Connected, greeting read, and logged in as the demo user. */
  static async loggedIn(port: number): Promise<Pop3Wire> {
    const wire = await Pop3Wire.connect(port);
    await wire.line();
    await wire.login();
    return wire;
  }

  /** Next line without its CRLF; rejects if the server closes first or nothing comes in 2 s. */
  line(): Promise<string> {
    return this.#client.readLine(2000);
  }

  /** Lines of a multi-line body up to (not including) the "." terminator, still dot-stuffed. */
  async body(): Promise<string[]> {
    const lines: string[] = [];
    for (let l = await this.line(); l !== '.'; l = await this.line()) lines.push(l);
    return lines;
  }

  send(line: string): void {
    this.#client.write(`${line}\r\n`);
  }

  async cmd(line: string): Promise<string> {
    this.send(line);
    return this.line();
  }

  /** Resolves when the server has closed the connection. */
  closed(): Promise<void> {
    return this.#client.whenClosed;
  }

  drop(): void {
    this.#client.destroy();
  }

  /**
   * Logs in with USER/PASS. The server releases the maildrop lock when it sees the previous
   * session's socket close, which can be a moment after our side saw it, so [IN-USE] is retried.
   */
  async login(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      assert.match(await this.cmd(`USER ${DEMO_USER}`), /^\+OK/);
      const reply = await this.cmd(`PASS ${DEMO_PASSWORD}`);
      if (reply.startsWith('-ERR [IN-USE]') && attempt < 20) {
        // A retry, as a real client's: the lock's release inside the server tells this side nothing.
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      assert.match(reply, /^\+OK/);
      return;
    }
  }
}

function apopDigest(greeting: string, password: string): string {
  const stamp = /<[^<>]+>/.exec(greeting)?.[0];
  assert.ok(stamp, `greeting has an APOP timestamp: ${greeting}`);
  return createHash('md5').update(stamp + password).digest('hex');
}

/** Each test gets its own server, so QUIT/UPDATE in one cannot leak into another. */
function withBackend(): { port: () => number } {
  let backend: DemoBackend | undefined;
  before(async () => {
    backend = await startDemoBackend({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await backend?.close();
  });
  return {
    port: () => {
      assert.ok(backend);
      return backend.port;
    },
  };
}

describe('demo backend: greeting and APOP', () => {
  const srv = withBackend();

  it('greets with a <pid.time@popwarden-demo> timestamp that differs per connection', async () => {
    const a = await Pop3Wire.connect(srv.port());
    const b = await Pop3Wire.connect(srv.port());
    const ga = await a.line();
    const gb = await b.line();
    assert.match(ga, /^\+OK .*<\d+\.\d+@popwarden-demo>$/);
    assert.notEqual(/<.*>/.exec(ga)?.[0], /<.*>/.exec(gb)?.[0]);
    a.drop();
    b.drop();
  });

  it('accepts APOP with the MD5 of timestamp + password', async () => {
    const c = await Pop3Wire.connect(srv.port());
    const greeting = await c.line();
    const reply = await c.cmd(`APOP ${DEMO_USER} ${apopDigest(greeting, DEMO_PASSWORD)}`);
    assert.match(reply, /^\+OK .*3 messages/);
    assert.equal(await c.cmd('QUIT'), '+OK popwarden demo server signing off (3 messages left)');
    await c.closed();
  });

  it('rejects APOP with a wrong password, and a digest computed for another greeting', async () => {
    const c = await Pop3Wire.connect(srv.port());
    const greeting = await c.line();
    assert.match(await c.cmd(`APOP ${DEMO_USER} ${apopDigest(greeting, 'wrong')}`), /^-ERR \[AUTH\]/);

    const other = await Pop3Wire.connect(srv.port());
    const otherGreeting = await other.line();
    other.drop();
    // A digest is only good for the greeting it was made for: replaying it elsewhere fails.
    assert.match(await c.cmd(`APOP ${DEMO_USER} ${apopDigest(otherGreeting, DEMO_PASSWORD)}`), /^-ERR \[AUTH\]/);
    assert.match(await c.cmd('STAT'), /^-ERR/, 'still not logged in');
    c.drop();
  });

  it('accepts USER/PASS and rejects a wrong password with [AUTH]', async () => {
    const c = await Pop3Wire.connect(srv.port());
    await c.line();
    assert.match(await c.cmd(`USER ${DEMO_USER}`), /^\+OK/);
    assert.match(await c.cmd('PASS nope'), /^-ERR \[AUTH\]/);
    assert.match(await c.cmd('PASS demo-password'), /^-ERR/, 'PASS needs a fresh USER');
    await c.login();
    c.drop();
  });

  it('locks the maildrop while a session holds it', async () => {
    const a = await Pop3Wire.loggedIn(srv.port());
    const b = await Pop3Wire.connect(srv.port());
    await b.line();
    await b.cmd(`USER ${DEMO_USER}`);
    assert.match(await b.cmd(`PASS ${DEMO_PASSWORD}`), /^-ERR \[IN-USE\]/);
    a.drop();
    await a.closed();
    b.drop();
  });
});

describe('demo backend: transaction commands', () => {
  const srv = withBackend();

  it('advertises TOP, UIDL, USER and RESP-CODES', async () => {
    const c = await Pop3Wire.connect(srv.port());
    await c.line();
    assert.match(await c.cmd('CAPA'), /^\+OK/);
    assert.deepEqual(await c.body(), ['TOP', 'UIDL', 'USER', 'RESP-CODES']);
    c.drop();
  });

  it('byte-stuffs RETR lines that start with a dot, and the size matches the unstuffed message', async () => {
    const c = await Pop3Wire.loggedIn(srv.port());
    const head = await c.cmd('RETR 2');
    const lines = await c.body();
    assert.ok(lines.includes('..hidden-file'), 'one dot becomes two');
    assert.ok(lines.includes('...and two dots'), 'two dots become three');
    assert.ok(lines.includes('..'), 'a lone dot inside the message becomes ".."');
    assert.ok(!lines.includes('.hidden-file'), 'no unstuffed line leaks');
    const unstuffed = lines.map((l) => (l.startsWith('.') ? l.slice(1) : l));
    const octets = Buffer.byteLength(unstuffed.map((l) => `${l}\r\n`).join(''), 'latin1');
    assert.equal(head, `+OK ${octets} octets`);
    assert.equal(await c.cmd('LIST 2'), `+OK 2 ${octets}`);
    c.drop();
  });

  it('TOP returns the headers, the blank line and n body lines', async () => {
    const c = await Pop3Wire.loggedIn(srv.port());
    assert.match(await c.cmd('TOP 1 2'), /^\+OK/);
    const lines = await c.body();
    const blank = lines.indexOf('');
    assert.ok(blank > 0);
    assert.ok(lines.includes('Subject: Welcome to the popwarden demo'));
    assert.deepEqual(lines.slice(blank + 1), ['Hello!', '']);
    c.drop();
  });

  it('LIST, UIDL and STAT agree, and message numbers are parsed strictly', async () => {
    const c = await Pop3Wire.loggedIn(srv.port());
    assert.match(await c.cmd('LIST'), /^\+OK 3 messages/);
    const list = await c.body();
    assert.equal(list.length, 3);
    const total = list.reduce((sum, l) => sum + Number(l.split(' ')[1]), 0);
    assert.equal(await c.cmd('STAT'), `+OK 3 ${total}`);
    assert.match(await c.cmd('UIDL'), /^\+OK/);
    assert.deepEqual(await c.body(), ['1 demo-0001-welcome', '2 demo-0002-dots', '3 demo-0003-dele']);
    for (const bad of ['RETR 0', 'RETR 4', 'RETR -1', 'RETR 1x', 'LIST 4294967297', 'TOP 1 -1']) {
      assert.match(await c.cmd(bad), /^-ERR/, bad);
    }
    c.drop();
  });

  it('answers -ERR to unknown commands and to transaction commands before login', async () => {
    const c = await Pop3Wire.connect(srv.port());
    await c.line();
    assert.match(await c.cmd('STAT'), /^-ERR/);
    assert.match(await c.cmd('RETR 1'), /^-ERR/);
    assert.match(await c.cmd('XYZZY'), /^-ERR/);
    await c.login();
    assert.match(await c.cmd('XYZZY'), /^-ERR/);
    assert.match(await c.cmd('STLS'), /^-ERR/, 'a legacy server without STLS');
    assert.match(await c.cmd('AUTH PLAIN'), /^-ERR/);
    assert.equal(await c.cmd('NOOP'), '+OK ');
    c.drop();
  });

  it('ends the session on a command line over 255 octets', async () => {
    const c = await Pop3Wire.connect(srv.port());
    await c.line();
    assert.match(await c.cmd(`USER ${'x'.repeat(300)}`), /^-ERR line too long/);
    await c.closed();
  });

  it('accepts bare LF line endings and pipelined commands', async () => {
    const raw = net.connect({ host: '127.0.0.1', port: srv.port() });
    const got = await new Promise<string[]>((resolve) => {
      let text = '';
      raw.setEncoding('latin1');
      raw.on('data', (d: string) => {
        text += d;
        const lines = text.split('\r\n');
        if (lines.length > 4) resolve(lines.slice(0, 4));
      });
      raw.write(`USER ${DEMO_USER}\nPASS ${DEMO_PASSWORD}\nSTAT\n`);
    });
    raw.destroy();
    assert.match(got[0] ?? '', /^\+OK .*ready/);
    assert.match(got[3] ?? '', /^\+OK 3 \d+$/);
  });
});

describe('demo backend: QUIT and the UPDATE state', () => {
  const srv = withBackend();

  it('does not delete anything when the client drops without QUIT', async () => {
    const a = await Pop3Wire.loggedIn(srv.port());
    assert.match(await a.cmd('DELE 1'), /^\+OK/);
    assert.match(await a.cmd('STAT'), /^\+OK 2 /, 'a marked message no longer counts');
    a.drop();
    await a.closed();

    const b = await Pop3Wire.loggedIn(srv.port());
    assert.match(await b.cmd('STAT'), /^\+OK 3 /);
    b.drop();
    await b.closed();
  });

  it('RSET unmarks, and a marked message cannot be read or deleted again', async () => {
    const c = await Pop3Wire.loggedIn(srv.port());
    assert.match(await c.cmd('DELE 2'), /^\+OK/);
    assert.match(await c.cmd('RETR 2'), /^-ERR .*deleted/);
    assert.match(await c.cmd('DELE 2'), /^-ERR .*deleted/);
    assert.match(await c.cmd('RSET'), /^\+OK maildrop has 3 messages/);
    assert.match(await c.cmd('RETR 2'), /^\+OK/);
    await c.body();
    assert.match(await c.cmd('QUIT'), /\(3 messages left\)/);
    await c.closed();
  });

  it('QUIT after DELE removes the message for later sessions', async () => {
    const a = await Pop3Wire.loggedIn(srv.port());
    assert.match(await a.cmd('DELE 1'), /^\+OK/);
    assert.equal(await a.cmd('QUIT'), '+OK popwarden demo server signing off (2 messages left)');
    await a.closed();

    const b = await Pop3Wire.loggedIn(srv.port());
    assert.match(await b.cmd('STAT'), /^\+OK 2 /);
    assert.match(await b.cmd('UIDL'), /^\+OK/);
    assert.deepEqual(await b.body(), ['1 demo-0002-dots', '2 demo-0003-dele'], 'messages are renumbered');
    b.drop();
    await b.closed();
  });

  it('QUIT before login ends the session without touching the maildrop', async () => {
    const c = await Pop3Wire.connect(srv.port());
    await c.line();
    assert.equal(await c.cmd('QUIT'), '+OK popwarden demo server signing off');
    await c.closed();
  });
});
