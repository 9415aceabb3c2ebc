-- What the v2-app-writes backend writes when it starts, after the pre-deploy backup (the
-- lost-writes scenario): three signups, a rename, a cancelled order.
INSERT INTO users (name) VALUES ('Neu 1'), ('Neu 2'), ('Neu 3');
UPDATE users SET name = 'Zoë (renamed)' WHERE id = 2;
DELETE FROM orders WHERE id = 6;
