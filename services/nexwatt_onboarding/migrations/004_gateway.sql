-- The gateway or vendor-cloud connector that commands the asset (issue 11); NULL: the asset's
-- own gateway, named by its asset id.
ALTER TABLE assets ADD COLUMN gateway_id text;
