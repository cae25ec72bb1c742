CREATE TABLE "coffer"."secret_versions" (
	"tenant_id" uuid NOT NULL,
	"secret_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"ciphertext" "bytea",
	"dek_version" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid,
	"destroyed_at" timestamp with time zone,
	CONSTRAINT "secret_versions_secret_id_version_pk" PRIMARY KEY("secret_id","version")
);
--> statement-breakpoint
CREATE TABLE "coffer"."secrets" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"owner" text NOT NULL,
	"name" text NOT NULL,
	"current_version" integer NOT NULL,
	"description" text,
	"tags" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"format" jsonb,
	"expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid,
	"updated_by" uuid,
	"deleted_at" timestamp with time zone,
	"deleted_by" uuid,
	CONSTRAINT "secrets_path_key" UNIQUE("tenant_id","kind","owner","name")
);
--> statement-breakpoint
ALTER TABLE "coffer"."tenants" ADD COLUMN "fingerprint_key_wrapped" "bytea";--> statement-breakpoint
ALTER TABLE "coffer"."tenants" ADD COLUMN "fingerprint_key_master_id" text;--> statement-breakpoint
ALTER TABLE "coffer"."secret_versions" ADD CONSTRAINT "secret_versions_secret_id_secrets_id_fk" FOREIGN KEY ("secret_id") REFERENCES "coffer"."secrets"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "coffer"."secrets" ADD CONSTRAINT "secrets_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "coffer"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "secret_versions_tenant_dek_idx" ON "coffer"."secret_versions" USING btree ("tenant_id","dek_version");--> statement-breakpoint
CREATE INDEX "secrets_deleted_idx" ON "coffer"."secrets" USING btree ("deleted_at");