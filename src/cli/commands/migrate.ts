import type { Command } from 'commander';
import { migrate } from '../../store/migrate.js';
import { leaf } from '../context.js';

export function registerMigrateCommand(program: Command): void {
  leaf(
    program.command('migrate').description('apply database migrations'),
    async (ctx) => {
      const { applied } = await migrate(ctx.pool, ctx.logger);
      return {
        json: { applied, status: 'current' },
        text: applied.length ? `applied ${applied.join(', ')}` : 'database schema is current',
      };
    },
    { autoMigrate: false, dataDir: 'create' },
  );
}
