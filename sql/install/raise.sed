# The Makefile runs every SQL template through this: a line "  @RAISE e@"
# becomes the RAISE of error array e ([sqlstate, message, detail, hint]; NULL
# or '00000': no error) in the function itself. Raised there, an error carries
# one CONTEXT line (that function's), where PERFORM duckdb._raise(e) adds two
# more of the extension's own plumbing. RAISE takes no NULL option: one branch
# per combination of DETAIL and HINT.
s/^\( *\)@RAISE \([a-z_][a-z_0-9]*\)@$/\1IF \2[1] <> '00000' THEN\
\1  IF \2[3] IS NOT NULL AND \2[4] IS NOT NULL THEN\
\1    RAISE EXCEPTION USING ERRCODE = \2[1], MESSAGE = \2[2], DETAIL = \2[3], HINT = \2[4];\
\1  ELSIF \2[3] IS NOT NULL THEN\
\1    RAISE EXCEPTION USING ERRCODE = \2[1], MESSAGE = \2[2], DETAIL = \2[3];\
\1  ELSIF \2[4] IS NOT NULL THEN\
\1    RAISE EXCEPTION USING ERRCODE = \2[1], MESSAGE = \2[2], HINT = \2[4];\
\1  ELSE\
\1    RAISE EXCEPTION USING ERRCODE = \2[1], MESSAGE = \2[2];\
\1  END IF;\
\1END IF;/
