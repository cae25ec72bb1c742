// The `coffer` command-line client. Its commands (login, get, set, run, import, export, check…) arrive with the
// CLI issue; until then it says so instead of pretending.
const [command] = process.argv.slice(2);
if (command === '--version' || command === '-v') {
  process.stdout.write('coffer 0.1.0\n');
} else {
  process.stdout.write(
    'coffer: the command-line client is not built yet; use the SDK (@coffer/sdk) or the HTTP API.\n',
  );
  process.exitCode = command === undefined || command === '--help' || command === 'help' ? 0 : 2;
}
