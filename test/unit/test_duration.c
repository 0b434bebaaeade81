/* Go-style durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "highlander/duration.h"
#include "highlander/util.h"

static int64_t parse(const char *s)
{
    int64_t ms = -12345;
    assert_int_equal(duration_parse(s, &ms), 0);
    return ms;
}

static void test_valid(void **state)
{
    (void)state;
    assert_int_equal(parse("500ms"), 500);
    assert_int_equal(parse("15s"), 15000);
    assert_int_equal(parse("1m30s"), 90000);
    assert_int_equal(parse("1h"), 3600000);
    assert_int_equal(parse("1.5s"), 1500);
    assert_int_equal(parse("0"), 0);
    assert_int_equal(parse("+2s"), 2000);
    assert_int_equal(parse("1500us"), 1);
    assert_int_equal(parse("2000000ns"), 2);
    assert_int_equal(parse("1h2m3s4ms"), 3723004);
    assert_int_equal(parse("\xc2\xb5s"[0] ? "3000\xc2\xb5s" : ""), 3);
}

static void test_invalid(void **state)
{
    static const char *const bad[] = {"", "15", "s", "-1s", "1x", "1.s5", "ms", "1 s", "1s ",
                                      "99999999999999999999h", ".s", "1..5s", NULL};
    int64_t ms;
    (void)state;
    for (int i = 0; bad[i]; i++) {
        if (duration_parse(bad[i], &ms) == 0)
            fail_msg("accepted bad duration \"%s\"", bad[i]);
    }
    assert_int_equal(duration_parse(NULL, &ms), -1);
}

static void test_format(void **state)
{
    char b[32];
    (void)state;
    duration_format(0, b, sizeof(b));
    assert_string_equal(b, "0s");
    duration_format(500, b, sizeof(b));
    assert_string_equal(b, "500ms");
    duration_format(15000, b, sizeof(b));
    assert_string_equal(b, "15s");
    duration_format(90000, b, sizeof(b));
    assert_string_equal(b, "1m30s");
    duration_format(3723500, b, sizeof(b));
    assert_string_equal(b, "1h2m3.5s");
    duration_format(1250, b, sizeof(b));
    assert_string_equal(b, "1.25s");
}

/* Kubernetes timestamps and kubectl-style ages (the /api/pods "age"). */
static void test_rfc3339_and_age(void **state)
{
    char out[32];
    (void)state;
    assert_true(time_parse_rfc3339("1970-01-01T00:00:00Z") == 0);
    assert_true(time_parse_rfc3339("2026-11-22T00:13:27Z") == 1795306407);
    assert_true(time_parse_rfc3339("2026-11-22T00:13:27.250Z") == 1795306407.25);
    time_format_rfc3339(1795306407.25, out, sizeof(out));
    assert_true(time_parse_rfc3339(out) == 1795306407.25);
    const char *const bad[] = {NULL, "", "2026-11-22", "2026-11-22T00:13:27", "2026-11-22T00:13:27+01:00",
                               "2026-11-22T00:13:27Zjunk", "garbage"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(time_parse_rfc3339(bad[i]) < 0);
    const struct {
        double s;
        const char *want;
    } ages[] = {{-5, "0s"}, {0, "0s"}, {59.9, "59s"}, {60, "1m0s"}, {3599, "59m59s"}, {3600, "1h0m"},
                {86399, "23h59m"}, {86400, "1d"}, {86400 * 400.0, "400d"}};
    for (size_t i = 0; i < sizeof(ages) / sizeof(ages[0]); i++) {
        format_age(ages[i].s, out, sizeof(out));
        assert_string_equal(out, ages[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_rfc3339_and_age),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
