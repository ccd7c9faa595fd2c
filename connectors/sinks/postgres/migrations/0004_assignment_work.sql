-- Assignment status at district scale: who owes what and what they handed in is kept in a
-- materialized view, assignment_work, that the analytics sink refreshes (concurrently, readers
-- never wait) after batches that change assignments, submissions, enrollments or LMS ids, at
-- most every SISLMS_ANALYTICS_REFRESH_S and at once when it goes idle. The status itself stays
-- computed when read (assignment_status), so work becomes missing the moment its due date passes.

drop view assignment_status;

create materialized view assignment_work as
with expected as (
    select a.assignment_id,
           a.course_id,
           coalesce(a.sis_course_id, c.class_sourced_id) as class_sourced_id,
           a.title,
           a.due_at,
           a.points_possible,
           e.user_sourced_id,
           e.school_sourced_id,
           u.user_id
    from assignments a
    left join lms_courses c on c.course_id = a.course_id
    join enrollments e
      on e.class_sourced_id = coalesce(a.sis_course_id, c.class_sourced_id)
     and e.role = 'student' and e.status = 'active' and not e.deleted
     and (e.begin_date is null or e.begin_date <= coalesce(a.due_at::date, current_date))
     and (e.end_date is null or e.end_date >= coalesce(a.due_at::date, current_date))
    left join lms_users u on u.user_sourced_id = e.user_sourced_id
    where a.workflow_state not in ('deleted', 'unpublished') and a.published is not false
), latest as (
    select distinct on (assignment_id, user_id) *
    from submissions
    order by assignment_id, user_id, submitted_at desc nulls last
)
select distinct on (x.assignment_id, x.user_sourced_id)
       x.*,
       coalesce(s.submission_id, t.submission_id) as submission_id,
       coalesce(s.submitted_at, t.submitted_at) as submitted_at,
       coalesce(s.seconds_late, t.seconds_late) as seconds_late,
       coalesce(s.score, t.score) as score,
       coalesce(s.excused, t.excused) as excused
from expected x
left join latest s on s.assignment_id = x.assignment_id and s.user_id = x.user_id
left join latest t on x.user_id is null and t.assignment_id = x.assignment_id
                  and t.sis_user_id = x.user_sourced_id
order by x.assignment_id, x.user_sourced_id, coalesce(s.submitted_at, t.submitted_at) desc nulls last;

create unique index assignment_work_key on assignment_work (assignment_id, user_sourced_id);
create index assignment_work_school_due on assignment_work (school_sourced_id, due_at);
create index assignment_work_class on assignment_work (class_sourced_id);
create index assignment_work_user on assignment_work (user_sourced_id);
create index assignment_work_due on assignment_work (due_at);

create view assignment_status as
select w.*,
       case
           when w.excused then 'excused'
           when w.submitted_at is not null and (w.due_at is null or w.submitted_at <= w.due_at) then 'on_time'
           when w.submitted_at is not null then 'late'
           when w.due_at is not null and w.due_at < now() then 'missing'
           else 'pending'
       end as status
from assignment_work w;
