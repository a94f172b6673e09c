import type { ServerChannel, Session } from 'ssh2';
import type { Logger } from '../types.js';

/**
 * A logged-in client that asks for a shell or a command rather than SFTP: `ssh` to try the key,
 * `scp` of OpenSSH 8 and older or `scp -O` (the old SCP protocol runs `scp -t` on the server),
 * `rsync -e ssh`, WinSCP or pscp set to SCP. Refused by ssh2 alone, the client printed only
 * "exec request failed on channel 0" (or "PTY allocation request failed"), which reads like a
 * broken server; the district is told instead that its login works and how to upload.
 */

/** What the client is told on its standard error, one line. */
export function notSftpMessage(tenant: string, keyFingerprint: string, command: string | null): string {
  const oldScp = command !== null && /^\s*scp\s/.test(command);
  return (
    `rosterd: you are logged in as ${tenant} (key ${keyFingerprint}), but this server takes files over SFTP only ` +
    `and runs no ${command === null ? 'shell' : 'commands'}. ` +
    (oldScp ? 'This scp speaks the old SCP protocol: use scp without -O (OpenSSH 9 and newer), scp -s (OpenSSH 8.7, 8.8) or sftp. ' : '') +
    'Upload users.csv (and groups.csv) to / with sftp, scp of OpenSSH 9 or newer, curl sftp://, or WinSCP or PuTTY psftp in SFTP mode.'
  );
}

/** Answers a shell or exec request on `session` with the message and exit status 1. */
export function refuseShellAndExec(session: Session, who: { tenant: string; keyFingerprint: string; logger: Logger }): void {
  // A terminal is granted (refused, OpenSSH prints "PTY allocation request failed" first); the
  // client's terminal is then in raw mode, where a line must end in CR LF.
  let terminal = false;
  session.on('pty', (accept) => {
    terminal = true;
    accept?.();
  });
  const refuse = (accept: () => ServerChannel, command: string | null) => {
    const channel = accept();
    who.logger.info(
      { event: 'ssh.not_sftp', tenant: who.tenant, command: command === null ? null : command.slice(0, 200) },
      command === null ? 'shell refused: SFTP only' : 'command refused: SFTP only',
    );
    const eol = terminal ? '\r\n' : '\n';
    channel.on('error', () => undefined);
    channel.stderr.write(notSftpMessage(who.tenant, who.keyFingerprint, command) + eol);
    channel.exit(1);
    channel.end();
  };
  session.on('shell', (accept) => refuse(accept, null));
  session.on('exec', (accept, _reject, info) => refuse(accept, info.command));
}
