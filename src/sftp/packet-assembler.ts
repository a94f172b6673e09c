import type { SFTPWrapper } from 'ssh2';

/** Largest SFTP packet assembled here; anything larger goes to ssh2 as is (it refuses it). */
const MAX_PACKET = 256 * 1024 + 1024;
const WRITE = 6;

/**
 * Hands ssh2's SFTP parser whole packets, assembling the ones split across SSH messages in one
 * reused buffer.
 *
 * Why: OpenSSH's sftp sends 32 KiB WRITEs, a little more than one SSH packet holds, so nearly
 * every WRITE arrives in two pieces, and ssh2 allocates a fresh 32 KiB buffer to join them. That
 * is 200 MB of short-lived buffers per 200 MB uploaded, and the garbage collector's work grew to
 * a third of the server's CPU time. Given a whole packet, ssh2 parses it in place.
 *
 * Safe because ssh2 handles a packet synchronously and SftpSession copies what it keeps of a
 * WRITE (the data, into the spool's buffers) before returning. Other packets, which are small
 * and may be looked at later, are handed over in a copy of their own.
 */
export function assembleWholePackets(sftp: SFTPWrapper): void {
  const channel = sftp as unknown as { push(data: Buffer | null): void };
  const parse = channel.push.bind(channel);
  let buf = Buffer.allocUnsafeSlow(64 * 1024);
  let have = 0; // bytes of the current packet in buf (including its 4-byte length)
  let need = 0; // its total size, once known (0: length not read yet)
  let passthrough = false;

  const deliver = (packet: Buffer, reused: boolean) => {
    parse(reused && packet[4] !== WRITE ? Buffer.from(packet) : packet);
  };

  channel.push = (data: Buffer | null) => {
    if (data === null || passthrough) return parse(data);
    let p = 0;
    while (p < data.length) {
      if (have === 0) {
        // At a packet boundary: whole packets in this chunk go straight through.
        if (data.length - p >= 4) {
          const size = 4 + data.readUInt32BE(p);
          if (size === 4 || size > MAX_PACKET) {
            // Malformed: ssh2 reports it and closes the channel; a length of 2^31 or more it reads
            // as negative (ssh2 1.17), throws, and ends the whole connection. Either way only this
            // client's connection is affected (tested in sftp-hostile).
            passthrough = true;
            return parse(data.subarray(p));
          }
          if (data.length - p >= size) {
            deliver(data.subarray(p, p + size), false);
            p += size;
            continue;
          }
          need = size;
        }
      }
      if (need === 0 && have + (data.length - p) < 4) {
        data.copy(buf, have, p);
        have += data.length - p;
        return;
      }
      if (need === 0) {
        const take = 4 - have;
        data.copy(buf, have, p, p + take);
        have = 4;
        p += take;
        need = 4 + buf.readUInt32BE(0);
        if (need === 4 || need > MAX_PACKET) {
          passthrough = true;
          parse(Buffer.from(buf.subarray(0, 4)));
          return parse(data.subarray(p));
        }
      }
      if (need > buf.length) {
        const bigger = Buffer.allocUnsafeSlow(need);
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
      const take = Math.min(need - have, data.length - p);
      data.copy(buf, have, p, p + take);
      have += take;
      p += take;
      if (have === need) {
        const packet = buf.subarray(0, need);
        have = 0;
        need = 0;
        deliver(packet, true);
      }
    }
  };
}
