-- Assignment status: for every assignment and every student expected to hand it in, whether the
-- work came on time, late, not yet, or never (missing once the due date has passed).
--
-- Who is expected: the students enrolled (SIS enrollments, role student, active) in the class the
-- LMS course was provisioned from, whose enrollment covers the due date, or today for work with no
-- due date (an enrollment that began after the due date or ended before it does not owe the work).
-- Dates are the session's (`set time zone` to the district's). LMS and SIS ids meet through the
-- provisioning results (the LMS id each user and course got) and the SIS ids the LMS events carry.

create view lms_courses as
select target_sis_id as class_sourced_id, lms_id as course_id
from provisioning_results
where target_type = 'course' and lms_id is not null;

create view lms_users as
select target_sis_id as user_sourced_id, lms_id as user_id
from provisioning_results
where target_type = 'user' and lms_id is not null;

create view assignment_status as
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
)
select x.*,
       s.submission_id,
       s.submitted_at,
       s.seconds_late,
       s.score,
       case
           when s.excused then 'excused'
           when s.submitted_at is not null and (x.due_at is null or s.submitted_at <= x.due_at) then 'on_time'
           when s.submitted_at is not null then 'late'
           when x.due_at is not null and x.due_at < now() then 'missing'
           else 'pending'
       end as status
from expected x
left join lateral (
    select * from submissions s
    where s.assignment_id = x.assignment_id
      and (s.user_id = x.user_id or (x.user_id is null and s.sis_user_id = x.user_sourced_id))
    order by s.submitted_at desc nulls last
    limit 1
) s on true;

create index submissions_sis_user on submissions (assignment_id, sis_user_id);
create index enrollments_class_role on enrollments (class_sourced_id, role);
