-- A version belongs to a secret of its own tenant, checked by one foreign key on (tenant_id, secret_id) instead of
-- the key on secret_id plus a trigger that looked the secret up again: a constraint cannot be skipped by a role
-- that may not alter the table, and it is one lookup per version instead of two.
ALTER TABLE "coffer"."secrets" ADD CONSTRAINT "secrets_tenant_id_key" UNIQUE("tenant_id","id");
--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" DROP CONSTRAINT "secret_versions_secret_id_secrets_id_fk";
--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD CONSTRAINT "secret_versions_secret_fk" FOREIGN KEY ("tenant_id","secret_id") REFERENCES "coffer"."secrets"("tenant_id","id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
DROP TRIGGER secret_versions_same_tenant ON coffer.secret_versions;
--> statement-breakpoint
DROP FUNCTION coffer.secret_versions_same_tenant();
