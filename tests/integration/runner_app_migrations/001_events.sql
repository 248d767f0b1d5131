CREATE TABLE events (event_id text PRIMARY KEY, part integer NOT NULL, off bigint NOT NULL);
CREATE TABLE attempts (event_id text NOT NULL, part integer NOT NULL, off bigint NOT NULL);
