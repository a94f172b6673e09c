/**
 * A path as one word of a POSIX shell command, for the commands rosterd tells an operator to run
 * (`mkdir -p -m 700 DIR`): left as it is when it holds nothing a shell reads specially, else in
 * single quotes. Pasted unquoted, a DATA_DIR such as "/srv/rosterd data" made two folders.
 */
export function shellWord(text: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
