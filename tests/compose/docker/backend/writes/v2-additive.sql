-- What the v2-additive backend writes when it starts: a nickname, into the column its migration
-- added (the additive-keep scenario: the column and this value stay after the rollback).
UPDATE users SET nickname = 'Zo' WHERE id = 2;
