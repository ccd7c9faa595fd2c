-- Engagement: time on task, events and sessions per user, course and local day, from
-- analytics.engagement_daily.v1. course_key is the LMS course id, or '*' for the user's total of
-- the day over every course (and activity outside any course). version: the user's revision.

create table engagement_daily (
    user_id text not null,
    course_key text not null,
    day date not null,
    course_id text,
    sis_user_id text,
    seconds double precision not null,
    events integer not null,
    sessions integer not null,
    first_activity_at timestamptz not null,
    last_activity_at timestamptz not null,
    version bigint not null,
    ingested_at timestamptz not null,
    written_at timestamptz not null default now(),
    primary key (user_id, course_key, day),
    constraint engagement_figures_positive check (seconds >= 0 and events > 0 and sessions > 0)
);
create index engagement_daily_day on engagement_daily (day, course_key);
create index engagement_daily_sis_user on engagement_daily (sis_user_id, day);
