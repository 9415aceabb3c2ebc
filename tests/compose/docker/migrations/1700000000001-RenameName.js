// Renames a column: the same column and values under a new name; its down() renames it back
// (the rename scenario: a rename is not a loss, the revert is trusted).
module.exports = class RenameName1700000000001 {
  name = "RenameName1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" RENAME COLUMN "name" TO "full_name"`);
  }

  async down(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" RENAME COLUMN "full_name" TO "name"`);
  }
};
