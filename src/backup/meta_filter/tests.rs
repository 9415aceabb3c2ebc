use super::*;

fn check(sql: &str) -> Result<String, String> {
    // Fed in 3-byte chunks: nothing depends on where reads split the stream.
    let mut c = Checker::default();
    let mut out = Vec::new();
    for chunk in sql.as_bytes().chunks(3) {
        c.feed(chunk, &mut out).map_err(|e| e.to_string())?;
    }
    c.finish(&mut out).map_err(|e| e.to_string())?;
    assert_eq!(out, sql.as_bytes(), "passed bytes differ");
    Ok(String::from_utf8(out).unwrap())
}

const HEAD: &str =
    "--\n-- PostgreSQL database dump\n--\n\n\\restrict Abc123XYZ\n\nSET standard_conforming_strings = on;\n";

#[test]
fn pg_dump_output_passes() {
    let sql = format!(
        "{HEAD}CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$\nBEGIN RETURN '\\x'; END\n$_$;\n\
         CREATE TABLE \"we\\ird\" (a text CHECK (a ~ '^[a-z]+\\.com$'), b text DEFAULT E'it\\'s \\\\');\n\
         COMMENT ON TABLE t IS 'a\n\\! not a command, inside a string\n';\n\
         /* a comment \\! /* nested */ still */\n\
         COPY public.t (a, b) FROM stdin;\n\\N\tx\\ty\n\\\\!\tz\n\\.\n\
         SELECT pg_catalog.setval('s', 1, true);\n\
         --\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict Abc123XYZ\n\n"
    );
    check(&sql).unwrap();
    // The COPY lines whose data followed, listed: not one inside a string or a comment.
    let mut c = Checker::default();
    let sql = format!(
        "{HEAD}-- COPY x (a) FROM stdin;\nSELECT 'COPY y (b) FROM stdin;\n';\n\
         COPY public.t (a, b) FROM stdin;\n1\t2\n\\.\n"
    );
    c.feed(sql.as_bytes(), &mut Vec::new()).unwrap();
    assert_eq!(c.copies, [b"COPY public.t (a, b) FROM stdin;".to_vec()]);
}

#[test]
fn text_that_only_names_a_setting_or_looks_odd_passes() {
    for ok in [
        "COMMENT ON TABLE t IS 'mentions standard_conforming_strings';\n",
        "SELECT E'a\\\\' AS x, 'b\\' AS y;\n",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n",
        "SELECT $_$ \\d+ $a$ $_$, a$b$, \"x\"\"y\", U&'d\\0061t';\n",
        "SELECT 1.5e-3, 1..2, x::text FROM t WHERE a[1:2] = '{}';\n",
        // Numbers as pg_dump writes them; `:name` psql leaves alone (no such variable).
        "SELECT 1E+05, .5, 2.e3, 1.5, a[1:n], b[:2], c:::\"T\", :'VERSION', :e, (1)::int;\n",
        "/* a /* nested */ comment */ SELECT 1; -- with \\ in it\n",
    ] {
        check(&format!("{HEAD}{ok}")).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

#[test]
fn meta_commands_outside_copy_data_are_refused() {
    for (bad, why) in [
        ("\\! touch /tmp/x\n", "meta-command outside COPY data: \\\\! touch /tmp/x"),
        ("SELECT 1; \\! id\n", "meta-command outside COPY data"),
        ("SELECT 1 \\g /tmp/out\n", "meta-command"),
        ("\\o /tmp/x\n", "meta-command"),
        ("\\restrict bad-key\n", "meta-command"),
        ("\\restrict K2\n", "meta-command"),
        ("\\unrestrict Other\n", "meta-command"),
        ("SET standard_conforming_strings = off;\nSELECT 'a\\' \\! id '';\n", "standard_conforming_strings"),
        ("\\unrestrict Abc123XYZ\nDROP TABLE t;\n", "SQL after the dump's \\unrestrict line"),
        // A COPY line inside a string is not a COPY: the lines after it are SQL again.
        ("SELECT '\nCOPY t FROM stdin;\n';\n\\! touch /tmp/x\n\\.\n", "meta-command"),
        // A COPY that does not end its statement on its line is not one either.
        ("COPY t FROM stdin; SELECT 1;\n\\! id\n", "not as pg_dump writes it"),
        // After `\.` the data ends.
        ("COPY t FROM stdin;\n1\n\\.\n\\! id\n", "meta-command"),
        ("SELECT $$ $$; \\! id\n", "meta-command"),
        ("SELECT E'\\'' \\! id\n", "meta-command"),
        // psql reads the number 1, then the quote `$a$ x $a$`, then runs `\!`.
        ("SELECT 1$a$ x $a$ \\! touch /tmp/x\n", "a dollar sign right after a number"),
        ("SELECT 1 $a$ x $a$; \\! id\n", "meta-command"),
        ("SELECT a$b$ \\! id\n", "meta-command"),
        ("SELECT $1e$x$ \\! id\n", "a parameter run into other text"),
        // psql 15+ reads `1e-` as one token, then `-` and the command; psql 14 a comment.
        ("SELECT 1e--\\! id\n", "an exponent without digits"),
        // psql 14 reads `1` and the E-string `e'\' '`, then the command; psql 15+ `1e`, a string.
        ("SELECT 1e'\\' ' \\! id\n", "an exponent without digits"),
        // psql 15+ reads `1e`, then the E-string `e'\' \! id '`; psql 14 `1`, `ee`, a string.
        ("SELECT 1ee'\\' \\! id '\n", "psql versions differ"),
        ("SELECT 0xe'\\' ' \\! id\n", "a number run into other text"),
        ("SELECT 1.x, 1_000\n", "a number run into other text"),
        // psql reads `:e` (a variable it leaves alone), then the plain string `'\'`, then `\!`.
        ("SELECT :e'\\' \\! id\n';\n", "meta-command"),
        // psql puts the value of its own variables in the SQL it reads: here the error's text.
        ("DO $$BEGIN RAISE EXCEPTION '\\! id'; END$$;\nSELECT :LAST_ERROR_MESSAGE;\n", "psql's own variable"),
        // `--` ends at a carriage return too.
        ("SELECT 1; -- a comment\r\\! id\n", "meta-command"),
        // Inside parentheses `;` ends nothing: psql is still in the SELECT.
        ("SELECT (1;\nCOPY t FROM stdin;\n\\! id\n\\.\n", "meta-command"),
        // psql 14+ reads this COPY as part of the function body, psql 13 runs it.
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;\nCOPY t FROM stdin;\n\\! id\nEND;\n",
            "psql versions differ",
        ),
        ("COPY t FROM stdin WITH (FORMAT text);\na'b\n\\.\n\\! id\n", "not as pg_dump writes it"),
        ("COPY t\nFROM stdin;\n\\.\n", "not as pg_dump writes it"),
        ("SELECT set_config('standard_conforming_strings', 'off', false);\n", "standard_conforming_strings"),
        ("RESET standard_conforming_strings;\n", "standard_conforming_strings"),
        ("RESET ALL;\n", "resets every setting"),
        // psql before 15.19 & co. runs the backtick before it checks the key: refused anywhere.
        ("SELECT '\\unrestrict `touch /tmp/x`';\n", "backtick"),
        ("COPY t FROM stdin;\n\\unrestrict `touch /tmp/x`\n\\.\n", "backtick"),
    ] {
        let e = check(&format!("{HEAD}{bad}")).expect_err(bad);
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}
