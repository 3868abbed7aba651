-- Documents: notes (markdown) and uploaded files, of a project or of the organization (no
-- project). Runs once per tenant schema with search_path set to that schema only.

create table documents (
    id uuid primary key,
    -- Null: the organization's own document. A project's documents go with the project.
    project_id uuid references projects (id) on delete cascade,
    title text not null check (length(title) between 1 and 300),
    kind text not null check (kind in ('note', 'file')),
    -- The sanitised upload name; files only.
    filename text check (length(filename) between 1 and 255),
    content_type text not null check (length(content_type) between 1 and 255),
    size_bytes bigint not null check (size_bytes >= 0),
    sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    created_by uuid not null references public.users (id),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint documents_filename_of_files check ((kind = 'file') = (filename is not null))
);
-- Keyset pages of one project (newest first) and the orderings by title and size.
create index documents_project_id on documents (project_id, id desc);
create index documents_title on documents (title, id);
create index documents_size on documents (size_bytes, id);

-- The bytes, apart from the row that describes them, so lists and reads of a document never
-- touch them. Exactly one row per document, written in the transaction that writes the document
-- and deleted with it.
create table document_contents (
    document_id uuid primary key references documents (id) on delete cascade,
    content bytea not null
);
