// Outside a transaction (`transaction = false`, run with `migration:run -t each`), as a migration
// that builds an index CONCURRENTLY must be: it adds a column, then the unique index fails on the
// real rows (many users share a first name). TypeORM records nothing (no row, and it has no dirty
// flag), yet the column stays and the failed CREATE INDEX CONCURRENTLY leaves an INVALID index
// behind: the database is half-migrated while TypeORM's state says clean.
module.exports = class AddFirstNameConcurrently1700000000001 {
  name = "AddFirstNameConcurrently1700000000001";
  transaction = false;

  async up(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" ADD COLUMN "first_name" text`);
    await queryRunner.query(
      `CREATE UNIQUE INDEX CONCURRENTLY "users_first_name_key" ON "users" (split_part("name", ' ', 1))`,
    );
  }

  async down(queryRunner) {
    await queryRunner.query(`DROP INDEX CONCURRENTLY IF EXISTS "users_first_name_key"`);
    await queryRunner.query(`ALTER TABLE "users" DROP COLUMN "first_name"`);
  }
};
