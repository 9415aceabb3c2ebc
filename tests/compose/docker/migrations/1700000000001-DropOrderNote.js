// Destroys data in a table that was there before the deploy: drops the orders' notes; its down()
// re-adds the column empty, so only the backup brings the notes back (the lost-writes scenario).
module.exports = class DropOrderNote1700000000001 {
  name = "DropOrderNote1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`ALTER TABLE "orders" DROP COLUMN "note"`);
  }

  async down(queryRunner) {
    await queryRunner.query(`ALTER TABLE "orders" ADD COLUMN "note" text`);
  }
};
