-- Feed URLs may carry credentials (https://user:password@host/, ?token=...). From now on the pipeline stores
-- them redacted; this scrubs rows written before, and keeps the dashboard role off the URL columns entirely.
UPDATE feeds SET
    url = regexp_replace(regexp_replace(url, '(://[^/?#@:]*):[^/?#@]*@', '\1:***@'),
                         '([?&;][A-Za-z0-9_.-]*(token|key|secret|password|passwd|pwd|auth|signature|sig|session|credential)[A-Za-z0-9_.-]*=)[^&;#]+',
                         '\1***', 'gi'),
    final_url = regexp_replace(regexp_replace(final_url, '(://[^/?#@:]*):[^/?#@]*@', '\1:***@'),
                         '([?&;][A-Za-z0-9_.-]*(token|key|secret|password|passwd|pwd|auth|signature|sig|session|credential)[A-Za-z0-9_.-]*=)[^&;#]+',
                         '\1***', 'gi')
WHERE url ~ '(://[^/?#@]*@|[?&;])' OR final_url ~ '(://[^/?#@]*@|[?&;])';

REVOKE SELECT ON feeds FROM finsent_dashboard;
GRANT SELECT (id, name, last_fetched_at, last_success_at, last_status, last_http_status, last_error, last_warning,
              last_items, consecutive_failures, created_at, updated_at) ON feeds TO finsent_dashboard;
