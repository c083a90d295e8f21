/* Unit tests for cluster_orchestrator/worker_proto: topic names; build ->
 * dump -> parse round trips of every payload; Oakestra-shaped job messages;
 * one rejecting case per rule with exactly the expected field paths; the
 * size, syntax, nesting and number limits every parser shares; outputs
 * left zeroed on failure; the error cap and message. Payloads in the tables
 * are written with ' for " (converted before parsing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define SID  "0123456789abcdef01234567"
#define SID2 "64f0c0ffee0000000000abcd"
#define REF  "'service_id':'" SID "','instance_number':0,'generation':1"

typedef enum {
    P_STATUS,
    P_INFO,
    P_STATE,
    P_JOB,
    P_RES,
    P_DEPLOY,
    P_DELETE,
    P_REG,
    P_COUNT
} which_t;

static const char *const which_name[] = {"status",    "information", "state",  "job",
                                         "resources", "deploy",      "delete", "register"};

/* ' -> " in a fresh string. */
static char *q(const char *s)
{
    char *r = xstrdup(s);
    for (char *c = r; *c; c++)
        if (*c == '\'')
            *c = '"';
    return r;
}

/* Runs parser w on len bytes, releasing whatever it returned. */
static int run(which_t w, const char *buf, size_t len, int cores, oak_err_t *err)
{
    int rc = -1;
    switch (w) {
    case P_STATUS: {
        bool on;
        rc = wp_parse_status(buf, len, &on, err);
        break;
    }
    case P_INFO: {
        json_t *o = NULL;
        rc = wp_parse_information(buf, len, cores, &o, err);
        assert_true(rc == 0 ? json_is_object(o) : o == NULL);
        json_decref(o);
        break;
    }
    case P_STATE: {
        wp_inst_t *v = NULL;
        size_t n = 7;
        rc = wp_parse_state(buf, len, &v, &n, err);
        if (rc < 0)
            assert_true(v == NULL && n == 0);
        free(v);
        break;
    }
    case P_JOB: {
        wp_job_t j;
        rc = wp_parse_job(buf, len, &j, err);
        break;
    }
    case P_RES: {
        wp_usage_t *v = NULL;
        size_t n = 7;
        rc = wp_parse_resources(buf, len, cores, &v, &n, err);
        if (rc < 0)
            assert_true(v == NULL && n == 0);
        free(v);
        break;
    }
    case P_DEPLOY: {
        wp_deploy_t d;
        rc = wp_parse_deploy(buf, len, &d, err);
        wp_deploy_clear(&d);
        break;
    }
    case P_DELETE: {
        wp_delete_t d;
        rc = wp_parse_delete(buf, len, &d, err);
        break;
    }
    case P_REG: {
        wp_register_t r;
        rc = wp_parse_register(buf, len, &r, err);
        wp_register_clear(&r);
        break;
    }
    case P_COUNT:
        break;
    }
    return rc;
}

static bool has_field(const oak_err_t *err, const char *field)
{
    size_t i;
    json_t *e;
    json_array_foreach(err->details, i, e)
    {
        if (!strcmp(oak_json_str(e, "field"), field))
            return true;
    }
    return false;
}

static const char *rule_of(const oak_err_t *err, const char *field)
{
    size_t i;
    json_t *e;
    json_array_foreach(err->details, i, e)
    {
        if (!strcmp(oak_json_str(e, "field"), field))
            return oak_json_str(e, "rule");
    }
    return NULL;
}

typedef struct {
    which_t w;
    int cores;
    const char *payload;   /* with ' for " */
    const char *fields[8]; /* exactly these paths, NULL-terminated; none = accepted */
    const char *rule;      /* optional: a substring of the first field's rule */
} rule_case_t;

static void check_case(const rule_case_t *c)
{
    _cleanup_free_ char *p = q(c->payload);
    oak_err_t err = OAK_ERR_INIT;
    int rc = run(c->w, p, strlen(p), c->cores, &err);
    size_t want = 0;
    while (want < 8 && c->fields[want])
        want++;
    if (want == 0) {
        if (rc != 0)
            fail_msg("%s %s: rejected: %s", which_name[c->w], p, err.msg);
        assert_null(err.details);
        return;
    }
    if (rc == 0)
        fail_msg("%s %s: accepted, expected %s", which_name[c->w], p, c->fields[0]);
    if (err.code != OAK_E_UNPROCESSABLE)
        fail_msg("%s %s: code %d (%s)", which_name[c->w], p, err.code, err.msg);
    for (size_t i = 0; i < want; i++)
        if (!has_field(&err, c->fields[i])) {
            _cleanup_free_ char *d = oak_json_dump(err.details);
            fail_msg("%s %s: %s not reported, got %s", which_name[c->w], p, c->fields[i], d);
        }
    if (json_array_size(err.details) != want) {
        _cleanup_free_ char *d = oak_json_dump(err.details);
        fail_msg("%s %s: expected %zu errors, got %s", which_name[c->w], p, want, d);
    }
    if (c->rule && !strstr(rule_of(&err, c->fields[0]), c->rule))
        fail_msg("%s %s: rule \"%s\" lacks \"%s\"", which_name[c->w], p,
                 rule_of(&err, c->fields[0]), c->rule);
    /* the message names the first field */
    assert_non_null(strstr(err.msg, oak_json_str(json_array_get(err.details, 0), "field")));
    oak_err_clear(&err);
}

#define REG_HOST "'host':'worker-a'"
#define REG_IP   "'ip':'10.0.0.5'"
#define REG_PORT "'port':50103"
#define REG_ARCH "'architecture':'amd64'"
#define REG_VIRT "'virtualization':['container']"
#define REG_CPU  "'cpu_cores':4"
#define REG_MEM  "'memory':7800"
#define REG_ALL  REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM

#define D_NAME "'job_name':'app.ns.svc.ns'"
#define D_IMG  "'image':'docker.io/library/nginx:latest'"
#define D_VIRT "'virtualization':'container'"
#define D_SVC  "'service':{'_id':'" SID "'}"
#define D_ALL  REF "," D_NAME "," D_IMG "," D_VIRT "," D_SVC

#define X10  "xxxxxxxxxx"
#define X50  X10 X10 X10 X10 X10
#define X64  X50 X10 "xxxx"
#define X200 X50 X50 X50 X50

/* clang-format off */
static const rule_case_t rule_cases[] = {
    /* ---- status ---- */
    {P_STATUS, 0, "{'status':'online'}", {NULL}},
    {P_STATUS, 0, "{'status':'offline','extra':[1]}", {NULL}},
    {P_STATUS, 0, "{}", {"status"}, "is required"},
    {P_STATUS, 0, "{'status':'ONLINE'}", {"status"}, "\"online\" or \"offline\""},
    {P_STATUS, 0, "{'status':true}", {"status"}},
    {P_STATUS, 0, "['online']", {"$"}, "JSON object"},

    /* ---- registration ---- */
    {P_REG, 0, "{" REG_ALL "}", {NULL}},
    {P_REG, 0, "{" REG_ALL ",'gpus':2,'node_id':'','token':'t0k3n','system_info':{'os':'x','n':1,'b':true},'id':7}", {NULL}},
    {P_REG, 0, "{}", {"host", "ip", "port", "architecture", "virtualization", "cpu_cores", "memory"}},
    {P_REG, 0, "{" REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'host':'a b'}", {"host"}, "[A-Za-z0-9._-]"},
    {P_REG, 0, "{" REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'host':'" X64 "y'}", {"host"}, "1 to 64"},
    {P_REG, 0, "{" REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'host':''}", {"host"}},
    {P_REG, 0, "{" REG_HOST "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'ip':'10.0.0.256'}", {"ip"}, "IPv4 or IPv6"},
    {P_REG, 0, "{" REG_HOST "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'ip':'fe80::1%eth0'}", {"ip"}},
    {P_REG, 0, "{" REG_HOST "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'ip':'worker-a'}", {"ip"}},
    {P_REG, 0, "{" REG_HOST "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'ip':167772165}", {"ip"}, "string"},
    {P_REG, 0, "{" REG_HOST "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'ip':'2001:db8::1'}", {NULL}},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'port':0}", {"port"}, "between 1 and 65535"},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'port':65536}", {"port"}},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_ARCH "," REG_VIRT "," REG_CPU "," REG_MEM ",'port':'50103'}", {"port"}},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_VIRT "," REG_CPU "," REG_MEM ",'architecture':'AMD64'}", {"architecture"}, "[a-z0-9_]"},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_CPU "," REG_MEM ",'virtualization':[]}", {"virtualization"}, "1 to 16"},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_CPU "," REG_MEM ",'virtualization':'container'}", {"virtualization"}},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_CPU "," REG_MEM ",'virtualization':['container','Docker',7]}", {"virtualization[1]", "virtualization[2]"}, "runtime name"},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_CPU "," REG_MEM ",'virtualization':['runsc','container','runsc']}", {"virtualization[2]"}, "repeats virtualization[0]"},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_CPU "," REG_MEM ",'virtualization':['a','b','c','d','e','f','g','h','i','j','k','l','m','n','o','p','q']}", {"virtualization"}},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_MEM ",'cpu_cores':0}", {"cpu_cores"}, "between 1 and 4096"},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_MEM ",'cpu_cores':4097}", {"cpu_cores"}},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU ",'memory':-1}", {"memory"}},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU ",'memory':7800.5}", {"memory"}, "integer"},
    {P_REG, 0, "{" REG_HOST "," REG_IP "," REG_PORT "," REG_ARCH "," REG_VIRT "," REG_CPU ",'memory':16777217}", {"memory"}},
    {P_REG, 0, "{" REG_ALL ",'gpus':-1}", {"gpus"}},
    {P_REG, 0, "{" REG_ALL ",'system_info':'linux'}", {"system_info"}, "object"},
    {P_REG, 0, "{" REG_ALL ",'system_info':{'a':{},'b':null,'c':'ok'}}", {"system_info.a", "system_info.b"}},
    {P_REG, 0, "{" REG_ALL ",'system_info':{'a':'" X200 X200 "'}}", {"system_info.a"}, "at most 256"},
    {P_REG, 0, "{" REG_ALL ",'node_id':'bad id'}", {"node_id"}, "1 to 24"},
    {P_REG, 0, "{" REG_ALL ",'node_id':'abcdefghijklmnopqrstuvwxy'}", {"node_id"}},
    {P_REG, 0, "{" REG_ALL ",'node_id':5}", {"node_id"}},
    {P_REG, 0, "{" REG_ALL ",'token':'a b'}", {"token"}, "visible ASCII"},
    {P_REG, 0, "{" REG_ALL ",'token':['t']}", {"token"}},

    /* ---- information ---- */
    {P_INFO, 0, "{}", {NULL}},
    {P_INFO, 0, "{'cpu_percent':12.5,'whatever':{'x':1}}", {NULL}},
    {P_INFO, 0, "{'cpu_cores':4,'cpu_percent':400}", {NULL}},
    {P_INFO, 0, "{'cpu_cores':4,'cpu_percent':400.5}", {"cpu_percent"}, "between 0 and 400"},
    {P_INFO, 4, "{'cpu_percent':401}", {"cpu_percent"}, "between 0 and 400"},
    {P_INFO, 4, "{'cpu_cores':8,'cpu_percent':401}", {NULL}},
    {P_INFO, 0, "{'cpu_percent':401}", {NULL}},
    {P_INFO, 0, "{'cpu_percent':-0.5}", {"cpu_percent"}},
    {P_INFO, 0, "{'cpu_percent':'12'}", {"cpu_percent"}, "must be a number"},
    {P_INFO, 0, "{'cpu_percent':1e308}", {"cpu_percent"}},
    {P_INFO, 0, "{'cpu_percent':null}", {"cpu_percent"}},
    {P_INFO, 0, "{'cpu_cores':0}", {"cpu_cores"}},
    {P_INFO, 0, "{'memory':900,'memory_total':800}", {"memory"}, "must not exceed memory_total"},
    {P_INFO, 0, "{'memory':-1,'memory_total':1.5}", {"memory", "memory_total"}},
    {P_INFO, 0, "{'disk_percent':100.01}", {"disk_percent"}},
    {P_INFO, 0, "{'gpus':'1'}", {"gpus"}},
    {P_INFO, 0, "{'load1':-1}", {"load1"}},
    {P_INFO, 0, "{'load1':1e7}", {"load1"}},
    {P_INFO, 0, "{'architecture':'x86 64'}", {"architecture"}},
    {P_INFO, 0, "{'virtualization':[]}", {NULL}},
    {P_INFO, 0, "{'virtualization':['unikernel','UNI']}", {"virtualization[1]"}},
    {P_INFO, 0, "{'kernel_version':''}", {"kernel_version"}, "printable ASCII"},
    {P_INFO, 0, "{'kernel_version':'6.1\\n'}", {"kernel_version"}},

    /* ---- job ---- */
    {P_JOB, 0, "{" REF ",'job_name':'app.ns.svc.ns','status':'RUNNING','status_detail':''}", {NULL}},
    /* Oakestra's shape, plus our identifying members */
    {P_JOB, 0, "{'sname':'app.ns.svc.ns','status':'FAILED','status_detail':'pull " "failed','instance':0,'publicip':'10.0.0.5','service_id':'" SID "','generation':3}", {NULL}},
    {P_JOB, 0, "{'sname':'app.ns.svc.ns','job_name':'app.ns.svc.ns','instance':2,'instance_number':2,'" "service_id':'" SID "','generation':3,'status':'DEAD','exit_code':137}", {NULL}},
    {P_JOB, 0, "{'sname':'a.b.c.d','job_name':'app.ns.svc.ns'," REF ",'status':'RUNNING'}", {"sname"}, "must equal job_name"},
    {P_JOB, 0, "{'instance':1,'instance_number':0,'service_id':'" SID "','generation':1,'status':'RUNNING'}", {"instance"}},
    {P_JOB, 0, "{'sname':'app.ns.svc.ns','status':'RUNNING','instance':0}", {"service_id", "generation"}, "is required"},
    {P_JOB, 0, "{}", {"service_id", "instance_number", "generation", "status"}},
    {P_JOB, 0, "{'service_id':'0123456789ABCDEF01234567','instance_number':0,'generation':1,'status':'" "RUNNING'}", {"service_id"}, "24 lowercase hex"},
    {P_JOB, 0, "{'service_id':'" SID "0','instance_number':0,'generation':1,'status':'RUNNING'}", {"service_id"}},
    {P_JOB, 0, "{'service_id':'abc','instance_number':0,'generation':1,'status':'RUNNING'}", {"service_id"}},
    {P_JOB, 0, "{'service_id':'" SID "','instance_number':-1,'generation':1,'status':'RUNNING'}", {"instance_number"}, "between 0 and 1000000"},
    {P_JOB, 0, "{'service_id':'" SID "','instance_number':1000001,'generation':1,'status':'RUNNING'}", {"instance_number"}},
    {P_JOB, 0, "{'service_id':'" SID "','instance_number':1000000,'generation':1,'status':'RUNNING'}", {NULL}},
    {P_JOB, 0, "{'service_id':'" SID "','instance_number':1.0,'generation':1,'status':'RUNNING'}", {"instance_number"}},
    {P_JOB, 0, "{'service_id':'" SID "','instance_number':'0','generation':1,'status':'RUNNING'}", {"instance_number"}},
    {P_JOB, 0, "{'service_id':'" SID "','instance':-3,'generation':1,'status':'RUNNING'}", {"instance"}},
    {P_JOB, 0, "{'service_id':'" SID "','instance_number':0,'generation':0,'status':'RUNNING'}", {"generation"}, "integer >= 1"},
    {P_JOB, 0, "{'service_id':'" SID "','instance_number':0,'generation':9223372036854775807,'status':'RUNNING'}", {NULL}},
    {P_JOB, 0, "{" REF ",'status':'running'}", {"status"}, "one of CREATED, RUNNING"},
    {P_JOB, 0, "{" REF ",'status':'REQUESTED'}", {"status"}},
    {P_JOB, 0, "{" REF ",'status':'RUNNING','job_name':'app ns'}", {"job_name"}, "1 to 200"},
    {P_JOB, 0, "{" REF ",'status':'RUNNING','job_name':''}", {"job_name"}},
    {P_JOB, 0, "{" REF ",'status':'RUNNING','job_name':'" X200 "'}", {NULL}},
    {P_JOB, 0, "{" REF ",'status':'RUNNING','job_name':'" X200 "x'}", {"job_name"}},
    {P_JOB, 0, "{" REF ",'status':'RUNNING','sname':7}", {"sname"}},
    {P_JOB, 0, "{" REF ",'status':'FAILED','status_detail':404}", {"status_detail"}, "string"},
    {P_JOB, 0, "{" REF ",'status':'DEAD','exit_code':256}", {"exit_code"}, "between 0 and 255"},
    {P_JOB, 0, "{" REF ",'status':'DEAD','exit_code':-9}", {"exit_code"}},

    /* ---- state ---- */
    {P_STATE, 0, "{'instances':[]}", {NULL}},
    {P_STATE, 0, "{'instances':[{" REF ",'status':'RUNNING'},{'service_id':'" SID "','instance_number':1,'generation':1,'status':'CREATED'}]}", {NULL}},
    {P_STATE, 0, "{}", {"instances"}, "is required"},
    {P_STATE, 0, "{'instances':{}}", {"instances"}, "at most 10000 objects"},
    {P_STATE, 0, "{'instances':[1,{" REF ",'status':'RUNNING'},{" REF "}]}", {"instances[0]", "instances[2].status"}},
    {P_STATE, 0, "{'instances':[{" REF ",'status':'RUNNING'},{'service_id':'" SID "','instance_number':2,'generation':0,'status':'RUNNING','instance':5}]}", {"instances[1].generation"}},
    {P_STATE, 0, "{'instances':[{" REF ",'status':'RUNNING'},{'service_id':'" SID2 "','instance_number':0,'generation':1,'status':'RUNNING'},{'service_id':'" SID "','instance_number':0,'generation':2,'status':'DEAD'}]}", {"instances[2]"}, "repeats the instance of instances[0]"},

    /* ---- resources ---- */
    {P_RES, 0, "{'services':[]}", {NULL}},
    {P_RES, 2, "{'services':[{" REF ",'cpu_percent':200,'memory_mb':12}]}", {NULL}},
    {P_RES, 2, "{'services':[{" REF ",'cpu_percent':200.5,'memory_mb':12}]}", {"services[0].cpu_percent"}, "between 0 and 200"},
    {P_RES, 0, "{'services':[{" REF ",'cpu_percent':200.5,'memory_mb':12}]}", {NULL}},
    {P_RES, 0, "{'services':[{" REF ",'cpu_percent':'1','memory_mb':-1}]}", {"services[0].cpu_percent", "services[0].memory_mb"}},
    {P_RES, 0, "{'services':[{" REF "}]}", {"services[0].cpu_percent", "services[0].memory_mb"}, "is required"},
    {P_RES, 0, "{'services':[{" REF ",'cpu_percent':1,'memory_mb':1},{" REF ",'cpu_percent':1,'memory_mb':1}]}", {"services[1]"}, "repeats"},
    {P_RES, 0, "{'jobs':[]}", {"services"}},

    /* ---- deploy (worker side) ---- */
    {P_DEPLOY, 0, "{" D_ALL "}", {NULL}},
    {P_DEPLOY, 0, "{" D_ALL ",'cmd':['nginx','-g','daemon " "off;'],'environment':['A=1','B='],'vcpus':2,'memory':512,'vgpus':0,'one_shot':true," "'port':'8080:80/tcp;9000'}", {NULL}},
    {P_DEPLOY, 0, "{}", {"service_id", "instance_number", "generation", "job_name", "image", "virtualization", "service"}},
    {P_DEPLOY, 0, "{" REF "," D_IMG "," D_VIRT "," D_SVC ",'job_name':'a/b'}", {"job_name"}},
    {P_DEPLOY, 0, "{" REF "," D_NAME "," D_VIRT "," D_SVC ",'image':''}", {"image"}, "must not be empty"},
    {P_DEPLOY, 0, "{" REF "," D_NAME "," D_VIRT "," D_SVC ",'image':'" X200 X200 X200 X200 X200 X200 "'}", {"image"}, "at most 1024"},
    {P_DEPLOY, 0, "{" D_ALL ",'cmd':'nginx'}", {"cmd"}, "array"},
    {P_DEPLOY, 0, "{" D_ALL ",'cmd':['ok',1]}", {"cmd[1]"}},
    {P_DEPLOY, 0, "{" D_ALL ",'environment':['NOEQUALS','=x','A=1']}", {"environment[0]", "environment[1]"}, "KEY=VALUE"},
    {P_DEPLOY, 0, "{" D_ALL ",'vcpus':1025}", {"vcpus"}},
    {P_DEPLOY, 0, "{" D_ALL ",'memory':-5}", {"memory"}},
    {P_DEPLOY, 0, "{" D_ALL ",'vgpus':0.5}", {"vgpus"}},
    {P_DEPLOY, 0, "{" D_ALL ",'one_shot':'yes'}", {"one_shot"}, "boolean"},
    {P_DEPLOY, 0, "{" D_ALL ",'port':'http'}", {"port"}, "[hostPort:]containerPort"},
    {P_DEPLOY, 0, "{" D_ALL ",'port':'70000'}", {"port"}},
    {P_DEPLOY, 0, "{" D_ALL ",'port':'80:8080/sctp'}", {"port"}},
    {P_DEPLOY, 0, "{" D_ALL ",'port':'0:80'}", {"port"}},
    {P_DEPLOY, 0, "{" D_ALL ",'port':'80;;81/udp;'}", {NULL}},
    {P_DEPLOY, 0, "{" REF "," D_NAME "," D_IMG "," D_SVC ",'virtualization':'Docker'}", {"virtualization"}, "runtime name"},
    {P_DEPLOY, 0, "{" REF "," D_NAME "," D_IMG "," D_SVC ",'virtualization':['container']}", {"virtualization"}},
    {P_DEPLOY, 0, "{" REF "," D_NAME "," D_IMG "," D_VIRT ",'service':[]}", {"service"}, "object"},
    {P_DEPLOY, 0, "{" REF "," D_NAME "," D_IMG "," D_VIRT ",'service':{'_id':'" SID2 "'}}", {"service._id"}, "must equal service_id"},
    {P_DEPLOY, 0, "{" REF "," D_NAME "," D_IMG "," D_VIRT ",'service':{}}", {NULL}},

    /* ---- delete ---- */
    {P_DELETE, 0, "{" REF "," D_NAME "}", {NULL}},
    {P_DELETE, 0, "{" REF "}", {NULL}},
    {P_DELETE, 0, "{'job_name':'app.ns.svc.ns','virtualization':'container','instance_number':0}", {"service_id", "generation"}},
    {P_DELETE, 0, "{" REF ",'job_name':'no spaces please'}", {"job_name"}},
    {P_DELETE, 0, "{'service_id':'" SID "','instance_number':0,'generation':-1}", {"generation"}},
};
/* clang-format on */

static void test_rules(void **state)
{
    for (size_t i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++)
        check_case(&rule_cases[i]);
    (void)state;
}

static void test_topics(void **state)
{
    char id[WP_NODE_ID_MAX + 1];
    wp_kind_t k;
    static const struct {
        const char *suffix;
        wp_kind_t kind;
    } kinds[] = {{"status", WP_STATUS},
                 {"information", WP_INFORMATION},
                 {"state", WP_STATE},
                 {"job", WP_JOB},
                 {"jobs/resources", WP_RESOURCES},
                 {"control/deploy", WP_DEPLOY},
                 {"control/delete", WP_DELETE}};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        _cleanup_free_ char *t = wp_topic("node-1_A", kinds[i].kind);
        _cleanup_free_ char *want = xasprintf("nodes/node-1_A/%s", kinds[i].suffix);
        assert_string_equal(t, want);
        assert_string_equal(wp_kind_name(kinds[i].kind), kinds[i].suffix);
        assert_int_equal(wp_topic_parse(t, id, &k), 0);
        assert_string_equal(id, "node-1_A");
        assert_int_equal(k, kinds[i].kind);
    }
    assert_int_equal(wp_topic_parse("nodes/abc/control/error", id, &k), 0);
    assert_string_equal(id, "abc");
    assert_int_equal(k, WP_UNKNOWN);
    assert_int_equal(wp_topic_parse("nodes/abc/job/extra", id, &k), 0);
    assert_int_equal(k, WP_UNKNOWN);
    assert_int_equal(wp_topic_parse("nodes/abcdefghijklmnopqrstuvwx/job", id, &k), 0);
    assert_string_equal(id, "abcdefghijklmnopqrstuvwx");

    static const char *bad[] = {"",
                                "nodes",
                                "nodes/",
                                "nodes//job",
                                "nodes/abc",
                                "nodes/abc/",
                                "node/abc/job",
                                "/nodes/abc/job",
                                "nodes/a.b/job",
                                "nodes/a b/job",
                                "nodes/+/job",
                                "nodes/#",
                                "nodes/abcdefghijklmnopqrstuvwxy/job",
                                "Nodes/abc/job"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(id, "junk");
        k = WP_JOB;
        if (wp_topic_parse(bad[i], id, &k) != -1)
            fail_msg("topic \"%s\" accepted", bad[i]);
        assert_string_equal(id, "");
        assert_int_equal(k, WP_UNKNOWN);
    }
    assert_int_equal(wp_topic_parse(NULL, id, &k), -1);

    assert_null(wp_topic("a/b", WP_JOB));
    assert_null(wp_topic("", WP_JOB));
    assert_null(wp_topic(NULL, WP_JOB));
    assert_null(wp_topic("abc", WP_UNKNOWN));
    assert_string_equal(wp_kind_name(WP_UNKNOWN), "unknown");

    assert_true(wp_service_id_valid(SID));
    assert_false(wp_service_id_valid("0123456789ABCDEF01234567"));
    assert_false(wp_service_id_valid(SID "0"));
    assert_false(wp_service_id_valid(NULL));
    assert_true(wp_node_id_valid("a"));
    assert_false(wp_node_id_valid("a.b"));

    wp_status_t s;
    for (int i = WP_ST_CREATED; i <= WP_ST_UNDEPLOYED; i++) {
        assert_int_equal(wp_status_parse(wp_status_name((wp_status_t)i), &s), 0);
        assert_int_equal(s, i);
    }
    assert_int_equal(wp_status_parse("Running", &s), -1);
    assert_int_equal(wp_status_parse(NULL, &s), -1);
    (void)state;
}

static void assert_inst_equal(const wp_inst_t *a, const wp_inst_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(a[i].service_id, b[i].service_id);
        assert_int_equal(a[i].instance_number, b[i].instance_number);
        assert_int_equal(a[i].generation, b[i].generation);
        assert_int_equal(a[i].status, b[i].status);
    }
}

static void assert_usage_equal(const wp_usage_t *a, const wp_usage_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(a[i].service_id, b[i].service_id);
        assert_int_equal(a[i].instance_number, b[i].instance_number);
        assert_int_equal(a[i].generation, b[i].generation);
        assert_true(a[i].cpu_percent == b[i].cpu_percent);
        assert_int_equal(a[i].memory_mb, b[i].memory_mb);
    }
}

/* Dumps a built payload (which must fit the limit) into a fresh string. */
static char *dump(json_t *payload)
{
    assert_non_null(payload);
    char *s = json_dumps(payload, JSON_COMPACT);
    assert_non_null(s);
    assert_true(strlen(s) <= WP_MAX_PAYLOAD);
    json_decref(payload);
    return s;
}

static void test_roundtrip_status_job_delete(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    for (int on = 0; on <= 1; on++) {
        _cleanup_free_ char *s = dump(wp_build_status(on));
        bool got = !on;
        assert_int_equal(wp_parse_status(s, strlen(s), &got, &err), 0);
        assert_int_equal(got, on);
    }

    wp_job_t j = {.instance_number = 42,
                  .generation = 7,
                  .status = WP_ST_DEAD,
                  .exit_code = 137,
                  .has_exit_code = true};
    strcpy(j.service_id, SID);
    strcpy(j.job_name, "app.ns.svc.ns");
    strcpy(j.status_detail, "killed by signal 9 \"KILL\"\nsee log");
    _cleanup_free_ char *js = dump(wp_build_job(&j));
    wp_job_t back;
    assert_int_equal(wp_parse_job(js, strlen(js), &back, &err), 0);
    assert_string_equal(back.service_id, SID);
    assert_int_equal(back.instance_number, 42);
    assert_int_equal(back.generation, 7);
    assert_string_equal(back.job_name, "app.ns.svc.ns");
    assert_int_equal(back.status, WP_ST_DEAD);
    assert_string_equal(back.status_detail, j.status_detail);
    assert_true(back.has_exit_code);
    assert_int_equal(back.exit_code, 137);

    /* without job name and exit code; generation at its maximum */
    wp_job_t j2 = {.instance_number = 0, .generation = INT64_MAX, .status = WP_ST_COMPLETED};
    strcpy(j2.service_id, SID2);
    _cleanup_free_ char *js2 = dump(wp_build_job(&j2));
    assert_null(strstr(js2, "job_name"));
    assert_null(strstr(js2, "exit_code"));
    assert_int_equal(wp_parse_job(js2, strlen(js2), &back, &err), 0);
    assert_int_equal(back.generation, (uint64_t)INT64_MAX);
    assert_string_equal(back.job_name, "");
    assert_false(back.has_exit_code);
    assert_int_equal(back.status, WP_ST_COMPLETED);

    /* Oakestra's message: aliases land in the canonical members */
    _cleanup_free_ char *oak =
        q("{'sname':'app.ns.svc.ns','status':'RUNNING','status_detail':"
          "'','instance':3,'publicip':'10.0.0.5','service_id':'" SID "','generation':2}");
    assert_int_equal(wp_parse_job(oak, strlen(oak), &back, &err), 0);
    assert_string_equal(back.job_name, "app.ns.svc.ns");
    assert_int_equal(back.instance_number, 3);
    assert_int_equal(back.status, WP_ST_RUNNING);

    wp_delete_t d = {.instance_number = 5, .generation = 3};
    strcpy(d.service_id, SID);
    strcpy(d.job_name, "a.b.c.d");
    _cleanup_free_ char *ds = dump(wp_build_delete(&d));
    wp_delete_t dback;
    assert_int_equal(wp_parse_delete(ds, strlen(ds), &dback, &err), 0);
    assert_string_equal(dback.service_id, SID);
    assert_int_equal(dback.instance_number, 5);
    assert_int_equal(dback.generation, 3);
    assert_string_equal(dback.job_name, "a.b.c.d");
    assert_null(err.details);
    (void)state;
}

static void test_roundtrip_register(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    /* the example of docs/worker-protocol.md */
    _cleanup_free_ char *body =
        q("{'host': 'worker-a', 'ip': '10.0.0.5', 'port': 50103, 'architecture': 'amd64', "
          "'virtualization': ['container'], 'cpu_cores': 4, 'memory': 7800, 'gpus': 0, "
          "'system_info': {'kernel_version': '6.1.0', 'os_version': 'Debian 12'}, "
          "'node_id': ''}");
    wp_register_t r;
    assert_int_equal(wp_parse_register(body, strlen(body), &r, &err), 0);
    assert_string_equal(r.host, "worker-a");
    assert_string_equal(r.ip, "10.0.0.5");
    assert_int_equal(r.port, 50103);
    assert_string_equal(r.arch, "amd64");
    assert_int_equal(r.nvirt, 1);
    assert_string_equal(r.virt[0], "container");
    assert_int_equal(r.cpu_cores, 4);
    assert_int_equal(r.memory_mb, 7800);
    assert_int_equal(r.gpus, 0);
    assert_null(r.node_id);
    assert_null(r.token);
    assert_string_equal(oak_json_str(r.system_info, "os_version"), "Debian 12");
    wp_register_clear(&r);

    /* build -> parse with every optional member set */
    char *virt[] = {"container", "runsc", "unikernel"};
    wp_register_t in = {.host = "edge-7.lab",
                        .ip = "fd00::7",
                        .node_id = "n_7-x",
                        .token = "wjt.abc+/=",
                        .arch = "arm64",
                        .virt = virt,
                        .nvirt = 3,
                        .port = 1,
                        .cpu_cores = 4096,
                        .memory_mb = WP_MAX_MEMORY_MB,
                        .gpus = 2};
    json_auto_t *si = json_pack("{s:s, s:i, s:b}", "os", "Debian", "uptime", 12, "vm", 1);
    in.system_info = si;
    _cleanup_free_ char *s = dump(wp_build_register(&in));
    assert_int_equal(wp_parse_register(s, strlen(s), &r, &err), 0);
    assert_string_equal(r.host, in.host);
    assert_string_equal(r.ip, in.ip);
    assert_string_equal(r.node_id, in.node_id);
    assert_string_equal(r.token, in.token);
    assert_string_equal(r.arch, in.arch);
    assert_int_equal(r.nvirt, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(r.virt[i], virt[i]);
    assert_int_equal(r.port, 1);
    assert_int_equal(r.cpu_cores, 4096);
    assert_int_equal(r.memory_mb, WP_MAX_MEMORY_MB);
    assert_int_equal(r.gpus, 2);
    assert_true(json_equal(r.system_info, si));
    wp_register_clear(&r);
    wp_register_clear(&r); /* idempotent */

    /* empty token means none (the Authorization header carries it) */
    _cleanup_free_ char *b2 = q("{" REG_ALL ",'token':''}");
    assert_int_equal(wp_parse_register(b2, strlen(b2), &r, &err), 0);
    assert_null(r.token);
    wp_register_clear(&r);
    assert_null(err.details);
    (void)state;
}

static void test_roundtrip_information(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    const char *virt[] = {"container", "unikernel"};
    wp_info_t in = {.cpu_cores = 8,
                    .cpu_percent = 799.25,
                    .memory_mb = 1000,
                    .memory_total_mb = 2000,
                    .disk_percent = 42.5,
                    .gpus = 1,
                    .load1 = 3.75,
                    .architecture = "amd64",
                    .virt = virt,
                    .nvirt = 2,
                    .kernel_version = "6.1.0-18-amd64 #1 SMP"};
    json_auto_t *built = wp_build_information(&in);
    _cleanup_free_ char *s = oak_json_dump(built);
    json_t *out = NULL;
    assert_int_equal(wp_parse_information(s, strlen(s), 0, &out, &err), 0);
    assert_true(json_equal(out, built));
    assert_int_equal(oak_json_int(out, "cpu_cores", 0), 8);
    assert_true(oak_json_num(out, "cpu_percent", 0) == 799.25);
    json_decref(out);

    /* unknown members are dropped, integers are kept as integers */
    _cleanup_free_ char *p = q("{'cpu_percent':5,'memory':7,'id':'x','host':'','vcpus':4}");
    assert_int_equal(wp_parse_information(p, strlen(p), 2, &out, &err), 0);
    assert_int_equal(json_object_size(out), 2);
    assert_true(oak_json_num(out, "cpu_percent", 0) == 5);
    assert_int_equal(oak_json_int(out, "memory", 0), 7);
    json_decref(out);

    /* a non-finite number cannot be built; the receiver names the field */
    in.cpu_percent = NAN;
    in.load1 = INFINITY;
    _cleanup_free_ char *bad = dump(wp_build_information(&in));
    assert_int_equal(wp_parse_information(bad, strlen(bad), 0, &out, &err), -1);
    assert_null(out);
    assert_int_equal(err.code, OAK_E_UNPROCESSABLE);
    assert_true(has_field(&err, "cpu_percent") && has_field(&err, "load1"));
    assert_int_equal(json_array_size(err.details), 2);
    oak_err_clear(&err);
    (void)state;
}

static void test_roundtrip_state_resources(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_inst_t in[3] = {
        {SID, 0, 1, WP_ST_RUNNING}, {SID, 1, 9, WP_ST_FAILED}, {SID2, 0, 2, WP_ST_UNDEPLOYED}};
    _cleanup_free_ char *s = dump(wp_build_state(in, 3));
    wp_inst_t *out = NULL;
    size_t n = 0;
    assert_int_equal(wp_parse_state(s, strlen(s), &out, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_inst_equal(in, out, 3);
    free(out);

    _cleanup_free_ char *e = dump(wp_build_state(NULL, 0));
    assert_int_equal(wp_parse_state(e, strlen(e), &out, &n, &err), 0);
    assert_null(out);
    assert_int_equal(n, 0);

    wp_usage_t u[2] = {{SID, 0, 1, 150.5, 64}, {SID, 3, 2, 0, 0}};
    _cleanup_free_ char *r = dump(wp_build_resources(u, 2));
    wp_usage_t *uo = NULL;
    assert_int_equal(wp_parse_resources(r, strlen(r), 2, &uo, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_usage_equal(u, uo, 2);
    free(uo);
    /* with one core 150.5 % is out of range */
    assert_int_equal(wp_parse_resources(r, strlen(r), 1, &uo, &n, &err), -1);
    assert_string_equal(oak_json_str(json_array_get(err.details, 0), "field"),
                        "services[0].cpu_percent");
    assert_null(uo);
    oak_err_clear(&err);

    /* the largest state that fits 256 KiB parses; 10,001 entries never do */
    size_t big = 2000;
    wp_inst_t *many = xcalloc(big, sizeof(*many));
    for (size_t i = 0; i < big; i++)
        many[i] = (wp_inst_t){SID, (int)i, 1000000000000ULL, WP_ST_COMPLETED};
    _cleanup_free_ char *ms = dump(wp_build_state(many, big));
    assert_int_equal(wp_parse_state(ms, strlen(ms), &out, &n, &err), 0);
    assert_int_equal(n, big);
    assert_inst_equal(many, out, big);
    free(out);
    free(many);

    json_auto_t *objs = json_array();
    for (int i = 0; i < WP_MAX_STATE + 1; i++)
        json_array_append_new(objs, json_object());
    json_auto_t *doc = json_pack("{s:O}", "instances", objs);
    _cleanup_free_ char *ts = oak_json_dump(doc);
    assert_true(strlen(ts) < WP_MAX_PAYLOAD);
    assert_int_equal(wp_parse_state(ts, strlen(ts), &out, &n, &err), -1);
    assert_int_equal(json_array_size(err.details), 1);
    assert_non_null(rule_of(&err, "instances"));
    oak_err_clear(&err);
    json_object_del(doc, "instances");
    json_object_set(doc, "services", objs);
    _cleanup_free_ char *tr = oak_json_dump(doc);
    assert_int_equal(wp_parse_resources(tr, strlen(tr), 0, &uo, &n, &err), -1);
    assert_non_null(rule_of(&err, "services"));
    assert_int_equal(json_array_size(err.details), 1);
    oak_err_clear(&err);
    (void)state;
}

/* A service document as the root stores it (root_orchestrator/api_apps.c). */
static json_t *service_doc(void)
{
    _cleanup_free_ char *s =
        q("{'_id':'" SID "','microserviceID':'" SID "','applicationID':'" SID2 "',"
          "'app_name':'app','app_ns':'ns','service_name':'svc','service_ns':'ns',"
          "'microservice_name':'svc','microservice_namespace':'ns',"
          "'job_name':'app.ns.svc.ns','virtualization':'container',"
          "'code':'docker.io/library/nginx:latest','image':'docker.io/library/nginx:latest',"
          "'cmd':['nginx','-g','daemon off;'],'environment':['MODE=edge'],"
          "'memory':100,'vcpus':1,'vgpus':0,'port':'80:80','one_shot':false,"
          "'addresses':{'rr_ip':'10.30.0.2'},'RR_ip':'10.30.0.2',"
          "'constraints':[{'type':'direct','cluster':'c1'}],"
          "'next_instance_progressive_number':1,'instance_list':[{'instance_number':0}],"
          "'organization_id':'o','userId':'u','status':'CLUSTER_SCHEDULED'}");
    json_t *j = NULL;
    assert_int_equal(oak_json_parse(s, strlen(s), 0, &j, NULL), 0);
    return j;
}

static void test_roundtrip_deploy(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *svc = service_doc();
    json_t *payload = NULL;
    assert_int_equal(wp_build_deploy(svc, 4, 12, &payload, &err), 0);
    _cleanup_free_ char *s = dump(payload);
    wp_deploy_t d;
    assert_int_equal(wp_parse_deploy(s, strlen(s), &d, &err), 0);
    assert_string_equal(d.service_id, SID);
    assert_int_equal(d.instance_number, 4);
    assert_int_equal(d.generation, 12);
    assert_string_equal(d.job_name, "app.ns.svc.ns");
    assert_string_equal(d.image, "docker.io/library/nginx:latest");
    assert_int_equal(d.ncmd, 3);
    assert_string_equal(d.cmd[2], "daemon off;");
    assert_int_equal(d.nenv, 1);
    assert_string_equal(d.env[0], "MODE=edge");
    assert_int_equal(d.vcpus, 1);
    assert_int_equal(d.memory_mb, 100);
    assert_int_equal(d.vgpus, 0);
    assert_false(d.one_shot);
    assert_string_equal(d.port, "80:80");
    assert_string_equal(d.virtualization, "container");
    assert_true(json_equal(d.service, svc));
    wp_deploy_clear(&d);

    /* minimal document: image from code, defaults for the rest */
    json_auto_t *min = json_pack("{s:s, s:s, s:s, s:s}", "_id", SID2, "job_name", "a.b.c.d", "code",
                                 "registry:5000/app:1", "virtualization", "runsc");
    assert_int_equal(wp_build_deploy(min, 0, 1, &payload, &err), 0);
    _cleanup_free_ char *ms = dump(payload);
    assert_int_equal(wp_parse_deploy(ms, strlen(ms), &d, &err), 0);
    assert_string_equal(d.image, "registry:5000/app:1");
    assert_int_equal(d.ncmd, 0);
    assert_null(d.cmd);
    assert_int_equal(d.nenv, 0);
    assert_int_equal(d.vcpus, 0);
    assert_int_equal(d.memory_mb, 0);
    assert_false(d.one_shot);
    assert_string_equal(d.port, "");
    assert_string_equal(d.virtualization, "runsc");
    wp_deploy_clear(&d);
    json_object_set_new(min, "image", json_string(""));
    assert_int_equal(wp_build_deploy(min, 0, 1, &payload, &err), 0);
    assert_string_equal(oak_json_str(payload, "image"), "registry:5000/app:1");
    json_decref(payload);

    /* documents that cannot be deployed: paths of the payload */
    json_auto_t *bad = json_pack("{s:i, s:s, s:s, s:[i]}", "_id", 5, "job_name", "a b",
                                 "virtualization", "container", "cmd", 1);
    payload = (json_t *)1;
    assert_int_equal(wp_build_deploy(bad, -1, 0, &payload, &err), -1);
    assert_null(payload);
    assert_int_equal(err.code, OAK_E_UNPROCESSABLE);
    static const char *want[] = {"service_id", "instance_number", "generation",
                                 "job_name",   "image",           "cmd[0]"};
    for (size_t i = 0; i < 6; i++)
        assert_non_null(rule_of(&err, want[i]));
    assert_int_equal(json_array_size(err.details), 6);
    oak_err_clear(&err);
    assert_int_equal(wp_build_deploy(min, 0, (uint64_t)INT64_MAX + 1, &payload, &err), -1);
    assert_non_null(rule_of(&err, "generation"));
    oak_err_clear(&err);
    json_auto_t *arr = json_array();
    assert_int_equal(wp_build_deploy(arr, 0, 1, &payload, &err), -1);
    assert_non_null(rule_of(&err, "service"));
    oak_err_clear(&err);

    /* a document too large for one payload: 413 */
    char *huge = xmalloc(WP_MAX_PAYLOAD + 1);
    memset(huge, 'x', WP_MAX_PAYLOAD);
    huge[WP_MAX_PAYLOAD] = '\0';
    json_object_set_new(svc, "application_desc", json_string(huge));
    free(huge);
    assert_int_equal(wp_build_deploy(svc, 0, 1, &payload, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    assert_null(payload);
    oak_err_clear(&err);
    (void)state;
}

/* Limits every parser shares: size, syntax, shape, nesting, numbers. */
static void test_syntax(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    char *big = xmalloc(WP_MAX_PAYLOAD + 1);
    memset(big, ' ', WP_MAX_PAYLOAD + 1);
    memcpy(big, "{}", 2);
    _cleanup_free_ char *deep33 =
        xasprintf("{'x':%.*s%.*s}", 32, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 32,
                  "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    _cleanup_free_ char *deep32 =
        xasprintf("{'x':%.*s%.*s}", 31, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 31,
                  "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    _cleanup_free_ char *d33 = q(deep33), *d32 = q(deep32);
    char very_deep[5001];
    memset(very_deep, '[', 5000);
    very_deep[5000] = '\0';
    _cleanup_free_ char *dup = q("{" REG_ALL ",'ip':'fd00::5'}");

    static const struct {
        const char *text;
        oak_code_t code;
    } bad[] = {
        {"", OAK_E_INVALID},
        {"not json", OAK_E_INVALID},
        {"{\"status\":", OAK_E_INVALID},
        {"{} {}", OAK_E_INVALID},
        {"{\"a\":NaN}", OAK_E_INVALID},
        {"{\"a\":Infinity}", OAK_E_INVALID},
        {"{\"a\":1e400}", OAK_E_INVALID},
        {"{\"a\":-1e400}", OAK_E_INVALID},
        {"{\"a\":99999999999999999999}", OAK_E_INVALID},
        {"{\"a\":\"x\\u0000y\"}", OAK_E_INVALID},
        {"{\"a\":\"\xff\"}", OAK_E_INVALID},
        {"{\"a\":1,\"a\":1}", OAK_E_INVALID},
        {"[]", OAK_E_UNPROCESSABLE},
        {"null", OAK_E_UNPROCESSABLE},
        {"\"status\"", OAK_E_UNPROCESSABLE},
    };
    for (which_t w = 0; w < P_COUNT; w++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            assert_int_equal(run(w, bad[i].text, strlen(bad[i].text), 0, &err), -1);
            if (err.code != bad[i].code)
                fail_msg("%s %s: code %d (%s)", which_name[w], bad[i].text, err.code, err.msg);
            if (bad[i].code == OAK_E_UNPROCESSABLE) {
                assert_int_equal(json_array_size(err.details), 1);
                assert_non_null(rule_of(&err, "$"));
            } else {
                assert_null(err.details);
                assert_non_null(strstr(err.msg, w == P_REG ? "registration" : "payload"));
            }
            oak_err_clear(&err);
        }
        /* 256 KiB + 1 byte: 413 before parsing; exactly the limit is fine */
        assert_int_equal(run(w, big, WP_MAX_PAYLOAD + 1, 0, &err), -1);
        assert_int_equal(err.code, OAK_E_TOO_LARGE);
        oak_err_clear(&err);
        assert_int_equal(run(w, big, WP_MAX_PAYLOAD, 0, &err), w == P_INFO ? 0 : -1);
        if (w != P_INFO)
            assert_int_equal(err.code, OAK_E_UNPROCESSABLE);
        oak_err_clear(&err);
        /* nesting: 33 levels are refused as a whole, 32 pass the shape check */
        assert_int_equal(run(w, d33, strlen(d33), 0, &err), -1);
        assert_int_equal(err.code, OAK_E_UNPROCESSABLE);
        assert_int_equal(json_array_size(err.details), 1);
        assert_non_null(strstr(rule_of(&err, "$"), "deeper than 32"));
        oak_err_clear(&err);
        if (run(w, d32, strlen(d32), 0, &err) < 0)
            assert_null(rule_of(&err, "$"));
        oak_err_clear(&err);
        /* beyond jansson's own depth limit: not JSON for us */
        assert_int_equal(run(w, very_deep, strlen(very_deep), 0, &err), -1);
        assert_int_equal(err.code, OAK_E_INVALID);
        oak_err_clear(&err);
        /* a previous error's details do not leak into a 400 */
        err.details = json_array();
        assert_int_equal(run(w, "x", 1, 0, &err), -1);
        assert_null(err.details);
        oak_err_clear(&err);
        /* err may be NULL */
        assert_int_equal(run(w, "[]", 2, 0, NULL), -1);
        assert_int_equal(run(w, "x", 1, 0, NULL), -1);
    }
    /* duplicate keys are a syntax error */
    assert_int_equal(run(P_REG, dup, strlen(dup), 0, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);
    free(big);
    (void)state;
}

/* Nothing is half-filled: a failed parse leaves its output zeroed. */
static void test_zeroed_on_failure(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    static const unsigned char
        zero[sizeof(wp_deploy_t) > sizeof(wp_job_t)
                 ? (sizeof(wp_deploy_t) > sizeof(wp_register_t) ? sizeof(wp_deploy_t)
                                                                : sizeof(wp_register_t))
                 : sizeof(wp_job_t)];
    /* valid except for the last member checked */
    _cleanup_free_ char *job = q("{" REF ",'job_name':'a.b','status':'RUNNING','exit_code':300}");
    wp_job_t j;
    memset(&j, 0xa5, sizeof(j));
    assert_int_equal(wp_parse_job(job, strlen(job), &j, &err), -1);
    assert_memory_equal(&j, zero, sizeof(j));
    oak_err_clear(&err);

    _cleanup_free_ char *reg = q("{" REG_ALL ",'system_info':{'a':'b'},'token':'a b'}");
    wp_register_t r;
    memset(&r, 0xa5, sizeof(r));
    assert_int_equal(wp_parse_register(reg, strlen(reg), &r, &err), -1);
    assert_memory_equal(&r, zero, sizeof(r));
    oak_err_clear(&err);

    _cleanup_free_ char *dep =
        q("{" D_ALL ",'cmd':['a'],'environment':['A=1'],'port':'80','one_shot':1}");
    wp_deploy_t d;
    memset(&d, 0xa5, sizeof(d));
    assert_int_equal(wp_parse_deploy(dep, strlen(dep), &d, &err), -1);
    assert_memory_equal(&d, zero, sizeof(d));
    oak_err_clear(&err);

    _cleanup_free_ char *del = q("{" REF ",'job_name':'a b'}");
    wp_delete_t dl;
    memset(&dl, 0xa5, sizeof(dl));
    assert_int_equal(wp_parse_delete(del, strlen(del), &dl, &err), -1);
    assert_memory_equal(&dl, zero, sizeof(dl));
    oak_err_clear(&err);

    bool on = true;
    assert_int_equal(wp_parse_status("{\"status\":1}", 12, &on, &err), -1);
    assert_false(on);
    oak_err_clear(&err);
    (void)state;
}

static void test_error_cap_and_message(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    /* 50 entries with 4 errors each */
    json_auto_t *a = json_array();
    for (int i = 0; i < 50; i++)
        json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:s}", "service_id", "x",
                                           "instance_number", -1, "generation", 0, "status", "?"));
    json_auto_t *doc = json_pack("{s:O}", "instances", a);
    _cleanup_free_ char *s = oak_json_dump(doc);
    wp_inst_t *out = NULL;
    size_t n = 0;
    assert_int_equal(wp_parse_state(s, strlen(s), &out, &n, &err), -1);
    assert_int_equal(json_array_size(err.details), WP_MAX_ERRORS);
    assert_string_equal(err.msg, "state payload is invalid: instances[0].service_id must be 24 "
                                 "lowercase hex digits (and 199 more errors)");
    assert_int_equal(oak_err_http_status(err.code), 422);
    oak_err_clear(&err);

    _cleanup_free_ char *one = q("{" REF ",'status':'RUNNING','exit_code':-1}");
    wp_job_t j;
    assert_int_equal(wp_parse_job(one, strlen(one), &j, &err), -1);
    assert_string_equal(err.msg,
                        "job payload is invalid: exit_code must be an integer between 0 and 255");
    oak_err_clear(&err);
    _cleanup_free_ char *two = q("{" REF ",'status':'RUNNING','exit_code':-1,'job_name':''}");
    assert_int_equal(wp_parse_job(two, strlen(two), &j, &err), -1);
    assert_non_null(strstr(err.msg, "(and 1 more error)"));
    oak_err_clear(&err);
    (void)state;
}

static void test_logs(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_logs_req_t q;
    const char *rq = "{\"request_id\":\"L7\",\"service_id\":\"0123456789abcdef01234567\","
                     "\"instance_number\":3,\"tail\":50}";
    assert_int_equal(wp_parse_logs_req(rq, strlen(rq), &q, &err), 0);
    assert_string_equal(q.request_id, "L7");
    assert_int_equal(q.instance_number, 3);
    assert_int_equal(q.tail, 50);
    const char *bad = "{\"request_id\":\"a/b\",\"service_id\":\"x\",\"instance_number\":-1,"
                      "\"tail\":0}";
    assert_int_equal(wp_parse_logs_req(bad, strlen(bad), &q, &err), -1);
    assert_int_equal(err.code, OAK_E_UNPROCESSABLE);
    assert_int_equal(json_array_size(err.details), 4);
    oak_err_clear(&err);

    /* an answer with invalid UTF-8 and more than WP_MAX_LOGS bytes: built
     * valid, cut at a line boundary, marked truncated */
    size_t n = WP_MAX_LOGS + 5000;
    char *big = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (i % 100 == 99) ? '\n' : 'a';
    big[10] = (char)0xff;
    big[n - 2] = 'Z';
    big[n] = '\0';
    wp_logs_t l = {.ok = true, .logs = big, .logs_len = n};
    snprintf(l.request_id, sizeof(l.request_id), "L8");
    json_t *p = wp_build_logs(&l);
    char *s = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    wp_logs_t back;
    assert_int_equal(wp_parse_logs(s, strlen(s), &back, &err), 0);
    assert_true(back.ok && back.truncated);
    assert_true(back.logs_len <= WP_MAX_LOGS);
    assert_int_equal(back.logs[back.logs_len - 2], 'Z'); /* the newest bytes are kept */
    assert_true((back.logs_len - n % 100) % 100 == 0); /* whole lines */
    wp_logs_clear(&back);
    free(s);
    free(big);

    /* an error answer needs error_code and error */
    const char *e1 = "{\"request_id\":\"L9\",\"ok\":false}";
    assert_int_equal(wp_parse_logs(e1, strlen(e1), &back, &err), -1);
    assert_int_equal(json_array_size(err.details), 2);
    oak_err_clear(&err);
    const char *e2 = "{\"request_id\":\"L9\",\"ok\":false,\"error_code\":404,\"error\":\"gone\"}";
    assert_int_equal(wp_parse_logs(e2, strlen(e2), &back, &err), 0);
    assert_false(back.ok);
    assert_int_equal(back.error_code, 404);
    assert_string_equal(back.error, "gone");
    assert_null(back.logs);
    wp_logs_clear(&back);
    /* topics */
    char *t = wp_topic("n1", WP_LOGS_REQ);
    assert_string_equal(t, "nodes/n1/control/logs");
    free(t);
    char id[WP_NODE_ID_MAX + 1];
    wp_kind_t k;
    assert_int_equal(wp_topic_parse("nodes/n1/logs", id, &k), 0);
    assert_int_equal(k, WP_LOGS);
}

static void test_state_req(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_state_req_t r;
    assert_int_equal(wp_parse_state_req("{}", 2, &r, &err), 0);
    assert_string_equal(r.reason, "");
    const char *ok = "{\"reason\":\"worker back online\"}";
    assert_int_equal(wp_parse_state_req(ok, strlen(ok), &r, &err), 0);
    assert_string_equal(r.reason, "worker back online");
    json_t *p = wp_build_state_req(&r);
    char *s = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    assert_string_equal(s, ok);
    free(s);
    const char *bad[] = {"[]", "{\"reason\":5}", "{\"reason\":\"a\\nb\"}", "nope", NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(wp_parse_state_req(bad[i], strlen(bad[i]), &r, &err), -1);
        assert_true(err.code == OAK_E_UNPROCESSABLE || err.code == OAK_E_INVALID);
        assert_string_equal(r.reason, "");
        oak_err_clear(&err);
    }
    char long_reason[WP_MAX_REASON + 40];
    int n = snprintf(long_reason, sizeof(long_reason), "{\"reason\":\"%0*d\"}", WP_MAX_REASON + 1, 0);
    assert_int_equal(wp_parse_state_req(long_reason, (size_t)n, &r, &err), -1);
    assert_string_equal(oak_json_str(json_array_get(err.details, 0), "field"), "reason");
    oak_err_clear(&err);
    char *t = wp_topic("n1", WP_STATE_REQ);
    assert_string_equal(t, "nodes/n1/control/state");
    free(t);
    char id[WP_NODE_ID_MAX + 1];
    wp_kind_t k;
    assert_int_equal(wp_topic_parse("nodes/n1/control/state", id, &k), 0);
    assert_int_equal(k, WP_STATE_REQ);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_roundtrip_status_job_delete),
        cmocka_unit_test(test_roundtrip_register),
        cmocka_unit_test(test_roundtrip_information),
        cmocka_unit_test(test_roundtrip_state_resources),
        cmocka_unit_test(test_roundtrip_deploy),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_zeroed_on_failure),
        cmocka_unit_test(test_error_cap_and_message),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_state_req),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
