/*
 * The fence's pure parts: which tokens count (the same digits the
 * admission policy's CEL accepts), and which API server refusals are the
 * fencing policy's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "highlander/fence.h"

static void test_parse_token(void **state)
{
    uint64_t t = 7;
    (void)state;

    assert_int_equal(fence_parse_token("1764700000123", &t), 0);
    assert_true(t == 1764700000123ull);
    assert_int_equal(fence_parse_token("0", &t), 0);
    assert_true(t == 0);
    assert_int_equal(fence_parse_token("999999999999999999", &t), 0); /* 18 digits */
    assert_true(t == 999999999999999999ull);
    t = 5;
    assert_int_equal(fence_parse_token("1000000000000000000", &t), -1); /* 19: beyond CEL's reach */
    assert_int_equal(fence_parse_token("18446744073709551616", &t), -1);
    assert_int_equal(fence_parse_token("", &t), -1);
    assert_int_equal(fence_parse_token(NULL, &t), -1);
    assert_int_equal(fence_parse_token("-1", &t), -1);
    assert_int_equal(fence_parse_token("12a", &t), -1);
    assert_int_equal(fence_parse_token(" 12", &t), -1);
    assert_true(t == 5); /* untouched on failure */
}

static void test_rejection(void **state)
{
    struct kube_response r;
    (void)state;

    memset(&r, 0, sizeof(r));
    r.status = 403;
    snprintf(r.err.message, sizeof(r.err.message), "%s",
             "pods \"p\" is forbidden: ValidatingAdmissionPolicy 'highlander-fencing' with binding "
             "'highlander-fencing-t1' denied request: highlander-fencing: token 5 is lower than the fence (9)");
    assert_true(fence_is_rejection(&r));
    snprintf(r.err.message, sizeof(r.err.message), "%s",
             "ValidatingAdmissionPolicy 'hl-fencing' with binding 'hl-fencing-t1' denied request: "
             "highlander-fencing: fencing token 5 is lower than the token 9 of the fence ns/highlander-fence-t1");
    assert_true(fence_is_rejection(&r)); /* the chart's policy, named after the release */
    r.status = 422;
    assert_false(fence_is_rejection(&r));
    r.status = 403;
    snprintf(r.err.message, sizeof(r.err.message), "%s",
             "pods is forbidden: User \"system:serviceaccount:x:y\" cannot create resource \"pods\"");
    assert_false(fence_is_rejection(&r)); /* RBAC, not the fence */
    snprintf(r.err.message, sizeof(r.err.message), "%s",
             "ValidatingAdmissionPolicy 'highlander-fence-monotonic' with binding 'b' denied request: x");
    assert_false(fence_is_rejection(&r)); /* the fence object's own policy */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_token),
        cmocka_unit_test(test_rejection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
