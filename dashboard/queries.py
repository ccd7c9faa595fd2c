"""What the dashboard reads from the analytics store: one method per figure, SQL in one place.

Every query is parameterised (no text from a request is ever put into SQL) and runs with the
session's time zone set to the district's, so that "today" and a due date's day are local. The
filters are a school (an org's sourcedId) and a term (an academic session's sourcedId): a term
narrows classes to those of the term and activity to the term's dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

__all__ = ["ROW_KINDS", "Filters", "Store"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Filters:
    school: str | None = None
    term: str | None = None

    def query(self, **extra: Any) -> dict[str, str]:
        """The filters as URL query parameters (for links that keep them)."""
        out = {k: v for k, v in (("school", self.school), ("term", self.term)) if v}
        out.update({k: str(v) for k, v in extra.items() if v is not None})
        return out


#: The drill-down tables: kind -> (relation, columns shown, filterable columns, order).
ROW_KINDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str]] = {
    "dead_letters": (
        "dead_letters",
        ("failed_at", "stage", "reason", "error_type", "error_message", "source_topic", "source_partition",
         "source_offset", "dlq_topic", "dlq_offset"),
        ("stage", "reason", "source_topic"),
        "failed_at desc",
    ),
    "provisioning": (
        "provisioning_status",
        ("target_type", "target_sis_id", "action", "status", "commanded_sequence", "applied_sequence",
         "lms_id", "error", "applied_at"),
        ("status", "target_type", "target_sis_id"),
        "target_type, target_sis_id",
    ),
    "assignments": (
        "assignment_status",
        ("due_at", "title", "class_sourced_id", "user_sourced_id", "status", "submitted_at", "score",
         "assignment_id", "school_sourced_id"),
        ("status", "class_sourced_id", "user_sourced_id", "school_sourced_id", "assignment_id"),
        "due_at desc nulls last, assignment_id, user_sourced_id",
    ),
    "grades": (
        "grades_passback_status",
        ("graded_at", "assignment_id", "user_id", "sis_user_id", "score", "passback_status",
         "passback_reason", "result_sourced_id", "passed_back_at"),
        ("passback_status", "sis_user_id", "assignment_id", "course_id"),
        "graded_at desc",
    ),
    "enrollments": (
        "current_enrollments",
        ("sourced_id", "class_sourced_id", "user_sourced_id", "school_sourced_id", "role", "status",
         "begin_date", "end_date", "deleted"),
        ("class_sourced_id", "user_sourced_id", "school_sourced_id", "role", "status"),
        "class_sourced_id, user_sourced_id",
    ),
    "engagement": (
        "engagement_daily",
        ("day", "sis_user_id", "user_id", "course_key", "seconds", "events", "sessions", "first_activity_at",
         "last_activity_at"),
        ("sis_user_id", "user_id", "course_key", "course_id", "day"),
        "day desc, sis_user_id, course_key",
    ),
}  # fmt: skip


class Store:
    """Reads the analytics store in ``schema`` through a pool of connections."""

    def __init__(self, pool: AsyncConnectionPool, schema: str, timezone: str) -> None:
        self.pool = pool
        self.schema = schema
        self.timezone = timezone

    async def _rows(self, query: str | sql.Composed, params: dict[str, Any] | None = None) -> list[Row]:
        async with self.pool.connection() as conn:
            await conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(self.schema)))
            await conn.execute("select set_config('TimeZone', %s, false)", (self.timezone,))
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params or {})
                return await cur.fetchall()

    # --- choices ------------------------------------------------------------------------------

    async def schools(self) -> list[Row]:
        return await self._rows(
            "select sourced_id, name from orgs where type = 'school' and not deleted order by name"
        )

    async def terms(self) -> list[Row]:
        return await self._rows(
            "select sourced_id, title, start_date, end_date from terms where not deleted"
            " and type in ('term', 'semester') order by start_date nulls last, title"
        )

    async def term_dates(self, term: str | None) -> tuple[date | None, date | None]:
        if not term:
            return None, None
        rows = await self._rows(
            "select start_date, end_date from terms where sourced_id = %(t)s", {"t": term}
        )
        return (rows[0]["start_date"], rows[0]["end_date"]) if rows else (None, None)

    # --- sync health --------------------------------------------------------------------------

    async def freshness(self) -> list[Row]:
        """Per topic: records stored, the newest record's time and the last write."""
        return await self._rows(
            "select topic, sum(next_offset) as stored, max(last_record_at) as last_record_at,"
            " max(written_at) as written_at from sink_positions group by topic order by topic"
        )

    async def provisioning(self) -> list[Row]:
        return await self._rows("select status, target_type, n from provisioning_counts order by 1, 2")

    async def dead_letters(self) -> list[Row]:
        return await self._rows(
            "select stage, count(*) as total, count(*) filter (where failed_at > now() - interval '1 day')"
            " as last_day, max(failed_at) as latest from dead_letters group by stage order by stage"
        )

    async def passback(self, days: int = 7) -> list[Row]:
        """Grades given in the last ``days`` days, by passback status."""
        return await self._rows(
            "select status, sum(n) as n from passback_counts"
            " where day > current_date - %(days)s::int group by 1 order by 1",
            {"days": days},
        )

    # --- engagement ---------------------------------------------------------------------------

    async def trend(self, f: Filters, days: int = 28) -> list[Row]:
        """District (or school) time on task per day: hours and active users (a rollup the sink
        keeps)."""
        start, end = await self.term_dates(f.term)
        return await self._rows(
            "select day, seconds / 3600.0 as hours, active from engagement_by_school"
            " where school_sourced_id = coalesce(%(school)s, '*')"
            "   and day >= coalesce(%(start)s, current_date - %(days)s::int + 1)"
            "   and day <= coalesce(%(end)s, current_date)"
            " order by day",
            {"start": start, "end": end, "days": days, "school": f.school},
        )

    async def work_by_school(self, f: Filters, days: int = 14) -> list[Row]:
        """Missing, late and on-time work due in the last ``days`` days, per school."""
        return await self._rows(
            "select w.school_sourced_id, o.name,"
            " coalesce(sum(w.n) filter (where w.kind = 'none'), 0) as missing,"
            " coalesce(sum(w.n) filter (where w.kind = 'late'), 0) as late,"
            " coalesce(sum(w.n) filter (where w.kind = 'on_time'), 0) as on_time"
            " from work_counts w left join orgs o on o.sourced_id = w.school_sourced_id"
            " where w.due_at >= now() - make_interval(days => %(days)s) and w.due_at < now()"
            "   and (%(school)s::text is null or w.school_sourced_id = %(school)s)"
            " group by 1, 2 order by 2",
            {"days": days, "school": f.school},
        )

    async def school(self, school: str) -> Row | None:
        rows = await self._rows(
            "select sourced_id, name, type, identifier from orgs where sourced_id = %(s)s", {"s": school}
        )
        return rows[0] if rows else None

    async def classes(self, school: str, f: Filters, days: int = 7) -> list[Row]:
        """The school's classes: students, minutes per student over ``days`` days, work status."""
        return await self._rows(
            "with c as ("
            "  select c.sourced_id, c.title, c.class_code, lc.course_id from classes c"
            "  left join lms_courses lc on lc.class_sourced_id = c.sourced_id"
            "  where c.school_sourced_id = %(school)s and not c.deleted"
            "    and (%(term)s::text is null or %(term)s = any(c.term_sourced_ids))"
            "), students as ("
            "  select e.class_sourced_id, count(*) as n from enrollments e"
            "  join c on c.sourced_id = e.class_sourced_id"
            "  where e.school_sourced_id = %(school)s"
            "  and e.role = 'student' and e.status = 'active' and not e.deleted"
            "  and (e.begin_date is null or e.begin_date <= current_date)"
            "  and (e.end_date is null or e.end_date >= current_date) group by 1"
            "), minutes as ("
            "  select c.sourced_id, sum(d.seconds) / 60.0 as minutes from engagement_daily d"
            "  join c on c.course_id = d.course_id"
            "  where d.course_key <> '*' and d.day > current_date - %(days)s::int group by 1"
            "), work as ("
            "  select w.class_sourced_id,"
            "   sum(w.n) filter (where w.kind = 'none' and w.due_at < now()) as missing,"
            "   sum(w.n) filter (where w.kind = 'late') as late from work_counts w"
            "  where w.school_sourced_id = %(school)s group by 1"
            ")"
            " select c.sourced_id, c.title, c.class_code, c.course_id, coalesce(st.n, 0) as students,"
            "  coalesce(m.minutes, 0) / greatest(coalesce(st.n, 0), 1) as minutes_per_student,"
            "  coalesce(w.missing, 0) as missing, coalesce(w.late, 0) as late"
            " from c left join students st on st.class_sourced_id = c.sourced_id"
            " left join minutes m on m.sourced_id = c.sourced_id"
            " left join work w on w.class_sourced_id = c.sourced_id order by c.title, c.sourced_id",
            {"school": school, "term": f.term, "days": days},
        )

    async def minutes_distribution(self, school: str | None, days: int = 7) -> list[float]:
        """Each active student's minutes on task over the last ``days`` days (a histogram's data)."""
        rows = await self._rows(
            "select sum(d.seconds) / 60.0 as minutes from engagement_daily d"
            " join users u on u.sourced_id = d.sis_user_id and u.role = 'student'"
            " where d.course_key = '*' and d.day > current_date - %(days)s::int"
            "   and (%(school)s::text is null or %(school)s = any(u.org_sourced_ids))"
            " group by d.sis_user_id",
            {"days": days, "school": school},
        )
        return [float(r["minutes"]) for r in rows]

    async def klass(self, class_id: str) -> Row | None:
        rows = await self._rows(
            "select c.sourced_id, c.title, c.class_code, c.school_sourced_id, o.name as school_name,"
            " lc.course_id from classes c left join orgs o on o.sourced_id = c.school_sourced_id"
            " left join lms_courses lc on lc.class_sourced_id = c.sourced_id where c.sourced_id = %(c)s",
            {"c": class_id},
        )
        return rows[0] if rows else None

    async def class_students(self, class_id: str, course_id: str | None, days: int = 7) -> list[Row]:
        return await self._rows(
            "with st as ("
            "  select e.user_sourced_id from enrollments e where e.class_sourced_id = %(c)s"
            "  and e.role = 'student' and e.status = 'active' and not e.deleted"
            "  and (e.begin_date is null or e.begin_date <= current_date)"
            "  and (e.end_date is null or e.end_date >= current_date)"
            "), m as ("
            "  select d.sis_user_id, sum(d.seconds) / 60.0 as minutes,"
            "   max(d.last_activity_at) as last_activity from engagement_daily d"
            "  where d.course_id = %(course)s and d.day > current_date - %(days)s::int"
            "  group by 1"
            "), w as ("
            "  select user_sourced_id, count(*) filter (where status = 'missing') as missing,"
            "   count(*) filter (where status = 'late') as late,"
            "   count(*) filter (where status = 'on_time') as on_time"
            "  from assignment_status where class_sourced_id = %(c)s group by 1"
            ")"
            " select st.user_sourced_id, u.given_name, u.family_name, coalesce(m.minutes, 0) as minutes,"
            "  m.last_activity, coalesce(w.missing, 0) as missing, coalesce(w.late, 0) as late,"
            "  coalesce(w.on_time, 0) as on_time"
            " from st left join users u on u.sourced_id = st.user_sourced_id"
            " left join m on m.sis_user_id = st.user_sourced_id"
            " left join w on w.user_sourced_id = st.user_sourced_id"
            " order by u.family_name, u.given_name, st.user_sourced_id",
            {"c": class_id, "course": course_id, "days": days},
        )

    async def class_assignments(self, class_id: str) -> list[Row]:
        return await self._rows(
            "select assignment_id, title, due_at, count(*) as students,"
            " count(*) filter (where status = 'on_time') as on_time,"
            " count(*) filter (where status = 'late') as late,"
            " count(*) filter (where status = 'missing') as missing,"
            " count(*) filter (where status = 'pending') as pending"
            " from assignment_status where class_sourced_id = %(c)s"
            " group by 1, 2, 3 order by due_at desc nulls last, title",
            {"c": class_id},
        )

    async def class_grades(self, course_id: str | None) -> list[Row]:
        return await self._rows(
            "select passback_status as status, count(*) as n from grades_passback_status"
            " where course_id = %(course)s group by 1 order by 1",
            {"course": course_id},
        )

    async def student(self, user: str) -> Row | None:
        rows = await self._rows(
            "select u.sourced_id, u.given_name, u.family_name, u.role, u.org_sourced_ids, u.grades,"
            " lu.user_id as lms_user_id from users u"
            " left join lms_users lu on lu.user_sourced_id = u.sourced_id"
            " where u.sourced_id = %(u)s",
            {"u": user},
        )
        return rows[0] if rows else None

    async def student_days(self, user: str, days: int = 28) -> list[Row]:
        return await self._rows(
            "select day, seconds / 60.0 as minutes, events, sessions from engagement_daily"
            " where sis_user_id = %(u)s and course_key = '*' and day > current_date - %(days)s::int"
            " order by day",
            {"u": user, "days": days},
        )

    async def student_courses(self, user: str, days: int = 28) -> list[Row]:
        return await self._rows(
            "select d.course_id, c.title, lc.class_sourced_id, sum(d.seconds) / 60.0 as minutes,"
            " sum(d.events) as events"
            " from engagement_daily d left join lms_courses lc on lc.course_id = d.course_id"
            " left join classes c on c.sourced_id = lc.class_sourced_id"
            " where d.sis_user_id = %(u)s and d.course_key <> '*' and d.day > current_date - %(days)s::int"
            " group by 1, 2, 3 order by minutes desc",
            {"u": user, "days": days},
        )

    async def student_work(self, user: str) -> list[Row]:
        return await self._rows(
            "select s.assignment_id, s.title, s.class_sourced_id, c.title as class_title, s.due_at,"
            " s.status, s.submitted_at, s.score, s.points_possible"
            " from assignment_status s left join classes c on c.sourced_id = s.class_sourced_id"
            " where s.user_sourced_id = %(u)s order by s.due_at desc nulls last",
            {"u": user},
        )

    async def student_grades(self, user: str, lms_user_id: str | None) -> list[Row]:
        return await self._rows(
            "select g.assignment_id, a.title, g.score, g.points_possible, g.graded_at, g.passback_status,"
            " g.passback_reason from grades_passback_status g"
            " left join assignments a on a.assignment_id = g.assignment_id"
            " where g.sis_user_id = %(u)s or g.user_id = %(lms)s order by g.graded_at desc",
            {"u": user, "lms": lms_user_id},
        )

    # --- the rows behind a number -------------------------------------------------------------

    async def rows(self, kind: str, filters: dict[str, str], limit: int = 500) -> tuple[list[Row], int]:
        relation, columns, filterable, order = ROW_KINDS[kind]
        where = [
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k))
            for k in filterable
            if k in filters
        ]
        cond = sql.SQL(" and ").join(where) if where else sql.SQL("true")
        params: dict[str, Any] = {k: filters[k] for k in filterable if k in filters}
        query = sql.SQL("select {} from {} where {} order by {} limit {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(relation),
            cond,
            sql.SQL(order),
            sql.Literal(limit),
        )
        count = sql.SQL("select count(*) as n from {} where {}").format(sql.Identifier(relation), cond)
        rows = await self._rows(query, params)
        total = await self._rows(count, params)
        return rows, int(total[0]["n"])
