#!/usr/bin/env node
/**
 * A bare SFTP server on ssh2, for `npm run bench:sftp` with BENCH_BARE=1 only: the reference point
 * the issue names ("a bare ssh2 server tuned as above"), i.e. TCP_NODELAY and ssh2's native crypto,
 * and nothing else. No jail, no names policy, no hash, no database, no receipt: every file lands in
 * the folder given as the argument, each WRITE acknowledged once it is written. It accepts any
 * public key whose signature verifies, so it listens on 127.0.0.1 only, and it is never part of
 * rosterd.
 *
 *   node scripts/bare-ssh2-sftp.mjs DIR   prints {"port": N} on stdout once listening
 */
import fs from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { generate } from '../dist/sftp/host-keys.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: bare-ssh2-sftp.mjs DIR');
  process.exit(2);
}
const OK = 0;
const FAILURE = 4;
const NO_SUCH_FILE = 2;

// rosterd's own generator: it retries the ed25519 keys ssh2 now and then cannot read back.
const server = new ssh2.Server({ hostKeys: [await generate('ed25519')] }, (client) => {
  client.on('error', () => undefined);
  client.on('authentication', (ctx) => {
    if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
    if (!ctx.signature) return ctx.accept(); // the key query
    const key = ssh2.utils.parseKey(`${ctx.key.algo} ${ctx.key.data.toString('base64')}`);
    if (!(key instanceof Error) && key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true) return ctx.accept();
    ctx.reject(['publickey']);
  });
  client.on('ready', () =>
    client.on('session', (acceptSession) => {
      const session = acceptSession();
      session.on('sftp', (acceptSftp) => serveSftp(acceptSftp()));
    }),
  );
});

function serveSftp(sftp) {
  // ssh2 does not answer a client's EOF; OpenSSH's sftp -b waits for exit-status, EOF and CLOSE.
  sftp.on('end', () => {
    if (sftp.outgoing.state === 'open') {
      sftp._protocol.exitStatus(sftp.outgoing.id, 0);
      sftp._protocol.channelEOF(sftp.outgoing.id);
      sftp.outgoing.state = 'eof';
    }
    sftp.end();
  });
  sftp.on('error', () => undefined);
  const files = new Map();
  let next = 0;
  const fdOf = (handle) => files.get(handle.readUInt32BE(0));
  sftp.on('REALPATH', (id, p) => sftp.name(id, [{ filename: path.posix.resolve('/', p), longname: '', attrs: {} }]));
  sftp.on('STAT', (id) => sftp.status(id, NO_SUCH_FILE));
  sftp.on('LSTAT', (id) => sftp.status(id, NO_SUCH_FILE));
  sftp.on('OPEN', (id, filename) => {
    fs.open(path.join(dir, path.basename(filename)), 'w', 0o600, (err, fd) => {
      if (err) return sftp.status(id, FAILURE, err.message);
      const handle = Buffer.alloc(4);
      handle.writeUInt32BE(++next);
      files.set(next, fd);
      sftp.handle(id, handle);
    });
  });
  sftp.on('WRITE', (id, handle, offset, data) => {
    fs.write(fdOf(handle), data, 0, data.length, offset, (err) => sftp.status(id, err ? FAILURE : OK));
  });
  sftp.on('FSTAT', (id, handle) =>
    fs.fstat(fdOf(handle), (err, st) =>
      err ? sftp.status(id, FAILURE) : sftp.attrs(id, { mode: st.mode, size: st.size, uid: 0, gid: 0, atime: 0, mtime: 0 }),
    ),
  );
  sftp.on('FSETSTAT', (id) => sftp.status(id, OK));
  sftp.on('SETSTAT', (id) => sftp.status(id, OK));
  sftp.on('CLOSE', (id, handle) => {
    const key = handle.readUInt32BE(0);
    const fd = files.get(key);
    files.delete(key);
    fs.close(fd, (err) => sftp.status(id, err ? FAILURE : OK));
  });
}

// ssh2 owns the listening socket; Nagle's algorithm off for each accepted one, as in rosterd.
server._srv.on('connection', (socket) => socket.setNoDelay(true));
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
