/*
 * 62_webhook_signature.sql: the per-integration signature scheme of Halo's webhooks
 * (configure_webhook_signature()), the kept rejected deliveries (rejected_webhooks) and
 * their diagnosis (diagnose_webhook()). Verification itself is src/inbound/webhook.c; the layouts
 * are src/core/hi_signature.c's; the kept deliveries live in shared memory (src/inbound/rejected.c).
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- The names of the canonical layouts ingest_webhook can verify (src/core/hi_signature.c).
CREATE OR REPLACE FUNCTION halo_itsm.webhook_layouts()
RETURNS text[] LANGUAGE C IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'halo_itsm_webhook_layouts';
COMMENT ON FUNCTION halo_itsm.webhook_layouts() IS
    'The canonical layouts configure_webhook_signature() accepts: default, blank_line, space, crlf, values, body, cavage, cavage_digest, rfc9421 (README, "Diagnosing a rejected webhook").';

-- Raises invalid_parameter_value unless name is an HTTP header name (a token of RFC 9110).
CREATE OR REPLACE FUNCTION halo_itsm._check_header_name(arg text, name text)
RETURNS text LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,64}$' THEN
        RAISE EXCEPTION 'halo_itsm: % is not an HTTP header name: %', arg, coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the header''s name as Halo''s webhook settings show it, e.g. ''x-signature'' (letters, digits and !#$%&''*+.^_`|~-, at most 64).';
    END IF;
    RETURN lower(name);
END
$$;

-- configure_webhook_signature(): the signed header names, checked (at most 16, each a
-- valid name, none twice) and lower-cased, in the order given.
CREATE OR REPLACE FUNCTION halo_itsm._check_signed_headers(signed_headers text[])
RETURNS text[] LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_names text[] := '{}';
    h text;
BEGIN
    IF array_ndims(signed_headers) > 1 OR cardinality(signed_headers) > 16 THEN
        RAISE EXCEPTION 'halo_itsm: signed_headers must be a list of at most 16 header names'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass them in the order Halo signs them, e.g. ARRAY[''content-length'', ''content-type'', ''host'', ''x-halo-date''].';
    END IF;
    FOREACH h IN ARRAY signed_headers LOOP
        h := halo_itsm._check_header_name('an element of signed_headers', h);
        IF h = ANY (v_names) THEN
            RAISE EXCEPTION 'halo_itsm: signed_headers names % twice', quote_literal(h)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Name each signed header once, in the order Halo signs them.';
        END IF;
        v_names := v_names || h;
    END LOOP;
    RETURN v_names;
END
$$;

-- configure_webhook_signature(): refuses a scheme whose settings contradict each other.
CREATE OR REPLACE FUNCTION halo_itsm._check_signature_combination(s halo_itsm.webhook_signatures)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF s.signature_header = ANY (s.signed_headers) THEN
        RAISE EXCEPTION 'halo_itsm: the signature header % cannot be one of the signed headers', quote_literal(s.signature_header)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Halo signs the other headers and sends the digest in the signature header.';
    END IF;
    IF s.layout = 'body' AND cardinality(s.signed_headers) > 0 THEN
        RAISE EXCEPTION 'halo_itsm: the layout ''body'' signs no headers, but signed_headers is %', s.signed_headers
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass signed_headers => ''{}'' and timestamp_header => ''none'' with layout => ''body''.';
    END IF;
    IF s.layout <> 'body' AND cardinality(s.signed_headers) = 0 THEN
        RAISE EXCEPTION 'halo_itsm: the layout % needs at least one signed header', quote_literal(s.layout)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the headers Halo signs, or layout => ''body'' when Halo signs the body alone.';
    END IF;
    IF s.timestamp_header IS NOT NULL AND NOT (s.timestamp_header = ANY (s.signed_headers)) THEN
        RAISE EXCEPTION 'halo_itsm: the timestamp header % is not one of the signed headers', quote_literal(s.timestamp_header)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'An unsigned date proves nothing: add it to signed_headers, or pass timestamp_header => ''none''.';
    END IF;
END
$$;

-- Sets how Halo signs the integration's webhooks; NULL keeps a value. Returns the settings.
CREATE OR REPLACE FUNCTION halo_itsm.configure_webhook_signature(integration integer,
                                                      signature_header text DEFAULT NULL,
                                                      signed_headers text[] DEFAULT NULL,
                                                      digest text DEFAULT NULL,
                                                      prefix text DEFAULT NULL,
                                                      timestamp_header text DEFAULT NULL,
                                                      layout text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s halo_itsm.webhook_signatures;
BEGIN PERFORM halo_itsm._refuse_on_standby('configure_webhook_signature()');  -- 25006 on a hot standby
    PERFORM halo_itsm._integration(integration);
    SELECT * INTO s FROM halo_itsm.webhook_signatures w WHERE w.integration_id = integration;
    IF NOT FOUND THEN
        s := ROW(integration, 'x-signature', '{content-length,content-type,host,x-halo-date}',
                 'base64', '', 'x-halo-date', 'default')::halo_itsm.webhook_signatures;
    END IF;

    IF signature_header IS NOT NULL THEN
        s.signature_header := halo_itsm._check_header_name('signature_header', signature_header);
    END IF;
    IF signed_headers IS NOT NULL THEN
        s.signed_headers := halo_itsm._check_signed_headers(signed_headers);
    END IF;
    IF digest IS NOT NULL THEN
        IF lower(digest) NOT IN ('base64', 'hex') THEN
            RAISE EXCEPTION 'halo_itsm: digest must be ''base64'' or ''hex'', not %', quote_literal(digest)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Choose the digest encoding set in Halo''s webhook (base64 unless Halo says hex).';
        END IF;
        s.digest := lower(digest);
    END IF;
    IF prefix IS NOT NULL THEN
        IF prefix !~ '^[!-~]{0,32}$' THEN
            RAISE EXCEPTION 'halo_itsm: prefix must be at most 32 printable ASCII characters without spaces, not %', quote_literal(prefix)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give the text Halo puts before the digest, e.g. ''sha256='', or '''' for none.';
        END IF;
        s.prefix := prefix;
    END IF;
    IF timestamp_header IS NOT NULL THEN
        s.timestamp_header := CASE WHEN lower(timestamp_header) = 'none' THEN NULL
                                   ELSE halo_itsm._check_header_name('timestamp_header', timestamp_header) END;
    END IF;
    IF layout IS NOT NULL THEN
        IF NOT (layout = ANY (halo_itsm.webhook_layouts())) THEN
            RAISE EXCEPTION 'halo_itsm: there is no canonical layout %', quote_literal(layout)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Choose one of %s; halo_itsm.diagnose_webhook() finds the one a rejected delivery used.',
                                    array_to_string(halo_itsm.webhook_layouts(), ', '));
        END IF;
        s.layout := layout;
    END IF;

    PERFORM halo_itsm._check_signature_combination(s);

    INSERT INTO halo_itsm.webhook_signatures AS w
    VALUES (s.*)
    ON CONFLICT (integration_id) DO UPDATE
       SET signature_header = excluded.signature_header, signed_headers = excluded.signed_headers,
           digest = excluded.digest, prefix = excluded.prefix,
           timestamp_header = excluded.timestamp_header, layout = excluded.layout;
    RETURN jsonb_build_object('signature_header', s.signature_header, 'signed_headers', to_jsonb(s.signed_headers),
                              'digest', s.digest, 'prefix', s.prefix,
                              'timestamp_header', coalesce(s.timestamp_header, 'none'), 'layout', s.layout);
END
$$;
COMMENT ON FUNCTION halo_itsm.configure_webhook_signature(integer, text, text[], text, text, text, text) IS
    'Sets how Halo signs this integration''s webhooks (signature header, signed headers in order, digest base64|hex, prefix, timestamp header or ''none'', canonical layout); NULL keeps a value. halo_itsm.diagnose_webhook() finds the settings from a rejected delivery.';

-- The rejected deliveries kept in shared memory (src/inbound/rejected.c), this database's only.
CREATE OR REPLACE FUNCTION halo_itsm._rejected_webhooks()
RETURNS TABLE (id bigint, integration_id integer, received_at timestamptz, sqlstate text, reason text,
               headers jsonb, body bytea)
LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_rejected_webhooks';

CREATE OR REPLACE VIEW halo_itsm.rejected_webhooks AS
    SELECT r.id, r.integration_id, r.received_at, r.sqlstate, r.reason, r.headers, r.body
      FROM halo_itsm._rejected_webhooks() r;
COMMENT ON VIEW halo_itsm.rejected_webhooks IS
    'The latest rejected webhook deliveries that named a real webhook key (at most 32, at most 7 days old, 64 kB each; body NULL when larger; kept until the server restarts); owner and superusers only. halo_itsm.diagnose_webhook(id) says how to make one verify.';

-- Which signing settings verify a kept rejected delivery, and the call that configures them.
CREATE OR REPLACE FUNCTION halo_itsm.diagnose_webhook(rejected_id bigint)
RETURNS jsonb LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'halo_itsm_diagnose_webhook';
COMMENT ON FUNCTION halo_itsm.diagnose_webhook(bigint) IS
    'Tries every candidate layout and setting with the integration''s secrets on a delivery of halo_itsm.rejected_webhooks; returns {"verified", "layout", "call", ...} where running "call" makes the same delivery verify, or a "hint" on what to check.';
