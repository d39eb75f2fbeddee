-- The fast lane polls every few minutes: it must honour what a publisher asks. A feed's Retry-After (on any
-- answer, usually 429/503) is kept here, and no poll of either lane is made before it; the fast lane also
-- waits the feed's min_interval_s after its last fetch.
ALTER TABLE feeds ADD COLUMN retry_after_until timestamptz;
