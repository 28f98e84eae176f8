/**
 * The recording tap for program backends (recorded-program.ts), run as popwarden's exec: backend
 * runs a program (its own session, a connected socket as stdin and stdout) and as a socket
 * activator does (no session of its own).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { recordProgram, type RecordedProgram } from './recorded-program.js';
import { LineReader } from './clients.js';

/** A one-exchange "server": greets, echoes one line back, and exits. */
const ECHO = { command: '/bin/sh', args: ['-c', 'echo "+OK hello"; read line; echo "+OK got $line"'] };

/** Runs `recorded` on one side of a loopback TCP connection (as stdin and stdout) and talks to it from the other. */
async function oneSession(recorded: RecordedProgram, detached: boolean): Promise<string[]> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(port, '127.0.0.1');
  const socket = await accepted;
  const child = spawn(recorded.command, recorded.args, { stdio: [socket, socket, 'inherit'], detached });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  socket.destroy();
  server.close();
  const reader = new LineReader(client);
  const lines = [String(await reader.readLine(5_000))];
  client.write('PING\r\n');
  lines.push(String(await reader.readLine(5_000)));
  client.destroy();
  await exited;
  return lines;
}

for (const ownSession of [false, true]) {
  test(`records both directions of every session, and knows when they have ended (ownSession: ${ownSession})`, async () => {
    const recorded = recordProgram(ECHO, { ownSession });
    try {
      assert.equal(recorded.sessions(), 0);
      await recorded.whenIdle();
      // popwarden spawns its exec: programs detached (their own session); the activator does not.
      assert.deepEqual(await oneSession(recorded, !ownSession), ['+OK hello', '+OK got PING']);
      assert.deepEqual(await oneSession(recorded, !ownSession), ['+OK hello', '+OK got PING']);
      await recorded.whenIdle();
      assert.equal(recorded.sessions(), 2);
      assert.equal(recorded.clientToServer().toString(), 'PING\r\nPING\r\n');
      assert.equal(recorded.serverToClient().toString(), '+OK hello\n+OK got PING\r\n'.repeat(2));
    } finally {
      recorded.stop();
    }
  });
}

/** Is `pid` running (a zombie, reparented to a PID 1 that never reaps, is not)? */
function running(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

test('whenIdle waits for what a session left running after its program exited', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'popwarden-recorded-test-'));
  const pidFile = path.join(dir, 'lingering.pid');
  // The "server" answers, then leaves a process behind in its session (as popa3d's child does).
  const lingering = { command: '/bin/sh', args: ['-c', `echo "+OK hello"; read line; echo "+OK got $line"; sleep 1 </dev/null >/dev/null 2>&1 & echo $! >${pidFile}`] };
  const recorded = recordProgram(lingering, { ownSession: false });
  try {
    await oneSession(recorded, true);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    assert.ok(running(pid), 'the lingering process outlives the program');
    await recorded.whenIdle();
    assert.equal(running(pid), false, 'whenIdle resolved while it still ran');
  } finally {
    recorded.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
