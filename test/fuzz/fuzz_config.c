/* libFuzzer target: a YAML config document through decode and validation. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "highlander/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_errors errs = {0}, warns = {0};
    struct config_file *f = NULL;

    if (size > 65536)
        return 0;
    if (config_file_parse((const char *)data, size, "fuzz.yaml", &f, &errs, (size & 1) ? &warns : NULL) == 0 && f->workloads) {
        struct workload_lists *w = f->workloads;
        char p[64];
        for (unsigned i = 0; i < w->processes_count; i++) {
            snprintf(p, sizeof(p), "p[%u]", i);
            config_validate_workload(WORKLOAD_PROCESS, &w->processes[i], p, &errs);
        }
        for (unsigned i = 0; i < w->cron_jobs_count; i++)
            config_validate_workload(WORKLOAD_CRONJOB, &w->cron_jobs[i], "c", &errs);
        for (unsigned i = 0; i < w->services_count; i++)
            config_validate_workload(WORKLOAD_SERVICE, &w->services[i], "s", &errs);
        for (unsigned i = 0; i < w->persistent_sets_count; i++)
            config_validate_workload(WORKLOAD_PERSISTENT, &w->persistent_sets[i], "ps", &errs);
    }
    config_file_free(f);
    config_errors_free(&errs);
    config_errors_free(&warns);
    return 0;
}
