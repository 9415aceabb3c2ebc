// A NOT NULL column without a default on a table with rows: PostgreSQL refuses it, and TypeORM's
// transaction rolls the migration back as a whole.
module.exports = class AddLoyaltyTier1700000000001 {
  name = "AddLoyaltyTier1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" ADD COLUMN "loyalty_tier" integer NOT NULL`);
  }

  async down(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" DROP COLUMN "loyalty_tier"`);
  }
};
