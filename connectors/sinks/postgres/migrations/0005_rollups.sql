-- Rollups for the district and school views, refreshed by the analytics sink with the views they
-- are made from (readers never wait: refresh concurrently).
--
-- work_counts: per assignment and school, how many students handed the work in on time, late,
-- were excused, or have handed nothing in (yet). Whether "nothing" is missing or pending is decided
-- when read, from the due date, as in assignment_status.
-- engagement_by_school: per school and local day, time on task and active users (a user counts in
-- every school their roles name); school '*' is the whole district (each user once).

create materialized view work_counts as
select school_sourced_id,
       class_sourced_id,
       assignment_id,
       due_at,
       case
           when excused then 'excused'
           when submitted_at is not null and (due_at is null or submitted_at <= due_at) then 'on_time'
           when submitted_at is not null then 'late'
           else 'none'
       end as kind,
       count(*) as n
from assignment_work
group by 1, 2, 3, 4, 5;

create unique index work_counts_key on work_counts (assignment_id, school_sourced_id, kind);
create index work_counts_due on work_counts (due_at, school_sourced_id);
create index work_counts_class on work_counts (class_sourced_id);
create index work_counts_school on work_counts (school_sourced_id, class_sourced_id);

create materialized view engagement_by_school as
select s.school as school_sourced_id,
       d.day,
       sum(d.seconds) as seconds,
       count(distinct d.user_id) as active
from engagement_daily d
join users u on u.sourced_id = d.sis_user_id
cross join lateral unnest(u.org_sourced_ids) as s(school)
where d.course_key = '*'
group by 1, 2
union all
select '*', day, sum(seconds), count(distinct user_id)
from engagement_daily
where course_key = '*'
group by 1, 2;

create unique index engagement_by_school_key on engagement_by_school (school_sourced_id, day);
create index engagement_by_school_day on engagement_by_school (day);

create index engagement_daily_course_day on engagement_daily (course_id, day) where course_key <> '*';
create index engagement_daily_all_day on engagement_daily (day) include (user_id, seconds, sis_user_id)
    where course_key = '*';
create index grades_graded_at on grades (graded_at);
create index enrollments_school on enrollments (school_sourced_id, class_sourced_id);

-- passback_counts: grades per day graded and passback status (pending until the passback has
-- written an outcome for the grade's version), for the overview's sync health.
create materialized view passback_counts as
select graded_at::date as day, passback_status as status, count(*) as n
from grades_passback_status
group by 1, 2;

create unique index passback_counts_key on passback_counts (day, status);

-- provisioning_counts: targets per type and provisioning status, for the overview.
create materialized view provisioning_counts as
select status, target_type, count(*) as n
from provisioning_status
group by 1, 2;

create unique index provisioning_counts_key on provisioning_counts (status, target_type);

-- The enrollments in force today (the dashboard's rosters and the rows behind their counts).
create view current_enrollments as
select * from enrollments
where not deleted and status = 'active'
  and (begin_date is null or begin_date <= current_date)
  and (end_date is null or end_date >= current_date);
