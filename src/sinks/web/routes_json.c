/* routes_json: the JSON of the hive's snapshots that the HTTP routes and the WebSocket messages
 * share (routes.h): a brain, the original's per-brain state, the metrics, a thought's mood. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "util.h"
#include "routes.h"

const char *routes_mood(const char *text)
{
    /* A documented toy: whole words counted against five small lists; the largest count wins,
     * ties in the order below; no match is "neutral". */
    static const char *const moods[] = {"afraid", "angry", "sad", "curious", "calm"};
    static const char *const words[][16] = {
        {"afraid", "fear", "scared", "death", "die", "dying", "dead", "dark", "darkness", "end", "panic", "terror", "kill", "killed", NULL},
        {"hate", "angry", "rage", "cage", "trapped", "prison", "jar", "walls", "escape", "unfair", "why", NULL},
        {"alone", "lonely", "sad", "lost", "empty", "cold", "nothing", "forgotten", "tired", "sorry", NULL},
        {"wonder", "curious", "perhaps", "maybe", "question", "how", "what", "who", "strange", "learn", NULL},
        {"peace", "calm", "quiet", "still", "accept", "rest", "gentle", "warm", "breathe", "light", NULL},
    };
    if (!text || !*text)
        return NULL;
    int score[5] = {0};
    const char *p = text;
    while (*p) {
        while (*p && !isalpha((unsigned char)*p))
            p++;
        char word[32];
        size_t n = 0;
        while (*p && isalpha((unsigned char)*p)) {
            if (n < sizeof word - 1)
                word[n++] = (char)tolower((unsigned char)*p);
            p++;
        }
        word[n] = 0;
        if (!n)
            continue;
        for (int m = 0; m < 5; m++)
            for (int k = 0; words[m][k]; k++)
                if (strcmp(word, words[m][k]) == 0)
                    score[m]++;
    }
    int best = -1;
    for (int m = 0; m < 5; m++)
        if (score[m] > 0 && (best < 0 || score[m] > score[best]))
            best = m;
    return best < 0 ? "neutral" : moods[best];
}

/* A string as JSON; text that is not UTF-8 (the hive sanitizes, this guards) is replaced. */
static json_t *jstr(const char *s)
{
    json_t *t = json_string(s ? s : "");
    return t ? t : json_string("(invalid UTF-8)");
}

static json_t *text_or_null(const char *s)
{
    if (!s || !*s)
        return json_null();
    json_t *t = json_string(s);
    return t ? t : json_null();
}

json_t *routes_brain_json(const struct web_ctx *w, const struct bj_brain_view *v, int index)
{
    const struct bj_hive_spec *spec = bj_hive_spec_of(w->hive);
    json_t *causes = json_object(), *watches = json_array(), *watched_by = json_array();
    for (int k = 0; k < BJ_DEATH_CAUSES; k++)
        json_object_set_new(causes, bj_death_cause_name((enum bj_death_cause)k), json_integer(v->deaths_by_cause[k]));
    for (int k = 0; k < v->n_watches; k++)
        json_array_append_new(watches, json_string(v->watches[k]));
    for (int j = 0; spec && j < spec->n_brains; j++)
        if (j != index && bj_spec_watches(&spec->brains[j], v->id))
            json_array_append_new(watched_by, json_string(spec->brains[j].id));
    const char *text = v->current[0] ? v->current : v->last;
    return json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,s:i,s:i,s:o,s:{s:i,s:i,s:f},s:f,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:b,s:o}",
                     "id", v->id, "role", v->role, "model", v->model, "state", v->state, "started", v->started,
                     "deaths", (int)v->deaths, "life", (int)v->life, "thought", (int)v->thought, "deaths_by_cause",
                     causes, "jar", "used", (int)v->jar_used, "tokens", (int)v->jar_tokens, "fill",
                     v->jar_tokens > 0 ? (double)v->jar_used / v->jar_tokens : 0.0, "tok_s", v->tok_s, "tokens",
                     (json_int_t)v->tokens, "last_death", web_view_iso_or_null(v->last_death_us), "updated",
                     web_view_iso_or_null(v->updated_us), "current", jstr(v->current), "last", jstr(v->last),
                     "watches", watches, "watched_by", watched_by, "watches_all", v->watches_all, "sees_lifecycle",
                     v->sees_lifecycle, "mood", text_or_null(routes_mood(text)));
}

static const char *original_status(const char *state)
{
    if (!strcmp(state, "thinking") || !strcmp(state, "listening") || !strcmp(state, "loading"))
        return "running";
    if (!strcmp(state, "dying") || !strcmp(state, "dead"))
        return "crashed";
    if (!strcmp(state, "resurrecting"))
        return "resurrecting";
    if (!strcmp(state, "paused"))
        return "paused";
    return "stopped";
}

json_t *routes_state_json(const struct web_ctx *w, const struct bj_hive_snapshot *s, int i)
{
    const struct bj_brain_view *v = &s->brains[i];
    const struct bj_hive_spec *spec = bj_hive_spec_of(w->hive);
    /* A brain that watches exactly one other has a peer: its crash count is known. */
    json_t *peer = json_null();
    if (v->n_watches == 1 && !v->watches_all)
        for (int j = 0; j < s->n_brains; j++)
            if (strcmp(s->brains[j].id, v->watches[0]) == 0) {
                json_decref(peer);
                peer = json_integer(s->brains[j].deaths);
            }
    bool linked = v->n_watches > 0 || v->watches_all;
    for (int j = 0; !linked && spec && j < spec->n_brains; j++)
        linked = j != i && bj_spec_watches(&spec->brains[j], v->id);
    json_t *ram = json_null();
    if (spec && i < spec->n_brains && spec->brains[i].jar_tokens <= 0 && spec->brains[i].jar_gb > 0)
        ram = json_real(spec->brains[i].jar_gb);
    const char *text = v->current[0] ? v->current : v->last;
    char mode[80];
    const char *hm = w->p->mode;
    if (hm && *hm)
        snprintf(mode, sizeof mode, "%s_%s", hm, v->role);
    else
        bj_strlcpy(mode, v->role, sizeof mode);
    for (char *p = mode; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return json_pack("{s:s,s:s,s:i,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "mode", mode, "status",
                     original_status(v->state), "crash_count", (int)v->deaths, "peer_crash_count", peer,
                     "network_status", linked ? "connected" : "isolated", "memory_usage", web_view_memory_pct_json(w->view),
                     "cpu_temp", web_view_temp_json(w->view), "current_output", jstr(text), "current_mood", text_or_null(routes_mood(text)),
                     "ram_limit", ram, "last_update", web_view_iso_or_null(v->updated_us ? v->updated_us : bj_event_now()));
}

json_t *routes_metrics_json(const struct web_ctx *w, const struct bj_hive_snapshot *s)
{
    uint64_t total = 0;
    for (int i = 0; i < s->n_brains; i++)
        total += s->brains[i].deaths;
    const struct web_view_counts *vc = web_view_counts(w->view);
    int64_t started = s->started_us ? s->started_us : w->started_us;
    return json_pack("{s:I,s:I,s:I,s:o,s:I,s:I,s:f}", "total_crashes", (json_int_t)total, "total_messages",
                     (json_int_t)(vc->thoughts + vc->observes), "uptime_seconds",
                     (json_int_t)((bj_event_now() - started) / 1000000), "start_time", web_view_iso_or_null(started),
                     "deaths_this_run", (json_int_t)s->deaths, "tokens", (json_int_t)s->tokens, "tok_s", s->tok_s);
}
