import { randomBytes } from 'node:crypto';
import type net from 'node:net';

/** SSH_DISCONNECT_HOST_NOT_ALLOWED_TO_CONNECT (RFC 4253 §11.1). */
const HOST_NOT_ALLOWED = 1;
/** How long the client gets to read the message before the socket is destroyed. */
const LINGER_MS = 1000;

/**
 * Turns a connection away before any key exchange, with a reason the client shows: the server's
 * identification line, then an SSH_MSG_DISCONNECT in the clear (allowed before the first key
 * exchange, RFC 4253 §6). OpenSSH prints it ("Received disconnect from … : <reason>"), as does
 * PuTTY; curl, paramiko and lftp say only that the connection was closed, as they did when the
 * socket was simply destroyed. Costs no cryptography, so it is as cheap as a bare close.
 */
export function refuseBeforeHandshake(socket: net.Socket, ident: string, reason: string): void {
  socket.on('error', () => undefined);
  // The client's identification and KEXINIT are read and dropped: unread data at close would
  // make the kernel send a reset, which may discard the message before the client reads it.
  socket.resume();
  socket.end(Buffer.concat([Buffer.from(`SSH-2.0-${ident}\r\n`), disconnectPacket(reason)]));
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** An unencrypted binary packet (RFC 4253 §6) holding SSH_MSG_DISCONNECT. */
function disconnectPacket(reason: string): Buffer {
  const description = Buffer.from(reason, 'utf8');
  const payload = Buffer.alloc(1 + 4 + 4 + description.length + 4);
  let at = payload.writeUInt8(1, 0); // SSH_MSG_DISCONNECT
  at = payload.writeUInt32BE(HOST_NOT_ALLOWED, at);
  at = payload.writeUInt32BE(description.length, at);
  at += description.copy(payload, at);
  payload.writeUInt32BE(0, at); // language tag: none
  // packet_length, padding_length, payload and padding together a multiple of 8, padding ≥ 4.
  let padding = 8 - ((4 + 1 + payload.length) % 8);
  if (padding < 4) padding += 8;
  const header = Buffer.alloc(5);
  header.writeUInt32BE(1 + payload.length + padding, 0);
  header.writeUInt8(padding, 4);
  return Buffer.concat([header, payload, randomBytes(padding)]);
}
