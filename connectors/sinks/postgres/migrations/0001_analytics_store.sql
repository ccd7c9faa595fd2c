-- The analytics store, version 1: dimensions from the SIS, facts from the LMS and the pipeline.
--
-- Every table written from a topic keeps the source version of its row (`version`: the source's
-- change time in ms, or a command's sequence) and is upserted only when the incoming version is
-- not older, so a replayed older record never overwrites a newer one. Entity rows are never
-- deleted: a tombstone sets `deleted`. No foreign keys between tables: topics arrive in any order
-- (an enrollment may land before its user); the views join what is there.
--
-- Personal data: users keep names (the class and student views show them) and nothing else that
-- identifies a person (no email, phone, birth date, demographics).

create table orgs (
    sourced_id text primary key,
    name text not null,
    type text not null,
    identifier text,
    parent_sourced_id text,
    status text not null,
    deleted boolean not null default false,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now()
);

create table terms (
    sourced_id text primary key,
    title text not null,
    type text not null,
    start_date date,
    end_date date,
    parent_sourced_id text,
    school_year text,
    status text not null,
    deleted boolean not null default false,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    constraint terms_dates_in_order check (start_date is null or end_date is null or start_date <= end_date)
);

create table courses (
    sourced_id text primary key,
    title text not null,
    course_code text,
    org_sourced_id text not null,
    school_year_sourced_id text,
    status text not null,
    deleted boolean not null default false,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now()
);

create table classes (
    sourced_id text primary key,
    title text not null,
    class_code text,
    class_type text not null,
    course_sourced_id text not null,
    school_sourced_id text not null,
    term_sourced_ids text[] not null default '{}',
    grades text[] not null default '{}',
    subjects text[] not null default '{}',
    status text not null,
    deleted boolean not null default false,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now()
);
create index classes_school on classes (school_sourced_id);

create table users (
    sourced_id text primary key,
    given_name text not null,
    family_name text not null,
    preferred_given_name text,
    role text,
    org_sourced_ids text[] not null default '{}',
    grades text[] not null default '{}',
    enabled boolean not null,
    status text not null,
    deleted boolean not null default false,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now()
);

create table enrollments (
    sourced_id text primary key,
    class_sourced_id text not null,
    user_sourced_id text not null,
    school_sourced_id text not null,
    role text not null,
    is_primary boolean,
    begin_date date,
    end_date date,
    status text not null,
    deleted boolean not null default false,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    constraint enrollments_dates_in_order check (begin_date is null or end_date is null or begin_date <= end_date)
);
create index enrollments_class on enrollments (class_sourced_id);
create index enrollments_user on enrollments (user_sourced_id);

-- What the roster agents asked of the LMS (the latest command per target) and what the sink
-- reported (the latest result per target): together, each target's provisioning status.
create table provisioning_commands (
    target_type text not null,
    target_sis_id text not null,
    command_id text not null,
    action text not null,
    attributes jsonb not null default '{}',
    reason text,
    version bigint not null,  -- the command's sequence
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    primary key (target_type, target_sis_id)
);

create table provisioning_results (
    target_type text not null,
    target_sis_id text not null,
    command_id text not null,
    action text not null,
    status text not null,
    lms_id text,
    http_status integer,
    error text,
    attempt integer not null,
    applied_at timestamptz not null,
    version bigint not null,  -- the applied command's sequence
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    primary key (target_type, target_sis_id)
);
create index provisioning_results_lms on provisioning_results (target_type, lms_id);
create index provisioning_commands_enrollment on provisioning_commands ((attributes ->> 'enrollment_id'))
    where target_type = 'enrollment';

create table assignments (
    assignment_id text primary key,
    course_id text not null,
    sis_course_id text,
    title text not null,
    due_at timestamptz,
    unlock_at timestamptz,
    lock_at timestamptz,
    points_possible double precision,
    workflow_state text not null,
    published boolean,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now()
);
create index assignments_course on assignments (course_id);

create table submissions (
    submission_id text primary key,
    assignment_id text not null,
    course_id text,
    user_id text not null,
    sis_user_id text,
    attempt integer,
    submitted_at timestamptz,
    workflow_state text not null,
    late boolean,
    missing boolean,
    excused boolean,
    seconds_late bigint,
    score double precision,
    graded_at timestamptz,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    constraint submissions_attempt_positive check (attempt is null or attempt >= 0),
    constraint submissions_seconds_late_positive check (seconds_late is null or seconds_late >= 0)
);
create index submissions_assignment on submissions (assignment_id, user_id);

create table grades (
    assignment_id text not null,
    user_id text not null,
    course_id text,
    sis_user_id text,
    score double precision,
    grade text,
    points_possible double precision,
    graded_at timestamptz not null,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    primary key (assignment_id, user_id)
);

create table grade_passback (
    assignment_id text not null,
    user_id text not null,
    status text not null,
    reason text,
    class_sourced_id text,
    student_sourced_id text,
    line_item_sourced_id text,
    result_sourced_id text,
    score double precision,
    graded_at timestamptz not null,
    passed_back_at timestamptz not null,
    version bigint not null,  -- the grade's change time: an outcome for an older grade never wins
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    primary key (assignment_id, user_id)
);

-- Learning activity, one row per event (events are immutable: a replay inserts nothing).
create table activity_events (
    event_id text primary key,
    user_id text not null,
    sis_user_id text,
    course_id text,
    action text not null,
    event_type text,
    object_type text,
    object_id text,
    event_time timestamptz not null,
    session_id text,
    duration_ms bigint,
    format text not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    constraint activity_duration_positive check (duration_ms is null or duration_ms >= 0)
);
create index activity_events_user_time on activity_events (user_id, event_time);
create index activity_events_course_time on activity_events (course_id, event_time);

-- Dead letters of every stage: what failed, where and why (not the original bytes: they stay on
-- the dead-letter topic, which the row points to).
create table dead_letters (
    dlq_topic text not null,
    dlq_partition integer not null,
    dlq_offset bigint not null,
    stage text not null,
    reason text not null,
    error_type text not null,
    error_message text not null,
    source_topic text,
    source_partition integer,
    source_offset bigint,
    failed_at timestamptz not null,
    trace_id text,
    written_at timestamptz not null default now(),
    primary key (dlq_topic, dlq_partition, dlq_offset)
);
create index dead_letters_stage_time on dead_letters (stage, failed_at);

-- Where the sink is in each topic, written in the same transaction as the rows: the freshness of
-- every flow, and what was stored up to which offset.
create table sink_positions (
    topic text not null,
    kafka_partition integer not null,
    next_offset bigint not null,
    last_record_at timestamptz,
    written_at timestamptz not null default now(),
    primary key (topic, kafka_partition)
);

-- Provisioning status per target: the latest command and whether the LMS has applied it.
create view provisioning_status as
select c.target_type,
       c.target_sis_id,
       c.action,
       c.version as commanded_sequence,
       r.version as applied_sequence,
       r.status as last_status,
       r.lms_id,
       r.error,
       r.applied_at,
       case
           when r.version is null then 'pending'
           when r.version < c.version then 'pending'
           else r.status
       end as status
from provisioning_commands c
left join provisioning_results r using (target_type, target_sis_id);

-- Enrollments with the LMS roles the role mapping gave for them: one row per grant (the person's
-- own role, an extra role, a guardian observing them); no row from provisioning until a command
-- exists (lms_role null).
create view enrollment_roles as
select e.sourced_id,
       e.class_sourced_id,
       e.user_sourced_id,
       e.school_sourced_id,
       e.role as sis_role,
       e.status,
       e.deleted,
       c.target_sis_id as lms_target_sis_id,
       c.attributes ->> 'user_id' as lms_user_sourced_id,
       c.attributes ->> 'role' as lms_role,
       c.attributes ->> 'base_role' as lms_base_role,
       c.attributes ->> 'rule' as rule,
       c.action as lms_action
from enrollments e
left join provisioning_commands c
       on c.target_type = 'enrollment' and c.attributes ->> 'enrollment_id' = e.sourced_id;

-- Grades with their passback status ('pending' until the passback has written an outcome for
-- this grade's version).
create view grades_passback_status as
select g.*,
       case
           when p.version is null or p.version < g.version then 'pending'
           else p.status
       end as passback_status,
       p.reason as passback_reason,
       p.result_sourced_id,
       p.passed_back_at
from grades g
left join grade_passback p using (assignment_id, user_id);
