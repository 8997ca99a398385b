// Command protoschema writes the protobuf field tables with which lbd's lab API server
// (lbd/lab/apiserver/protobuf.py) decodes the request bodies kubectl sends as protobuf.
//
// kubectl's typed clients (`kubectl create namespace`, `create secret`, `create deployment`, ...)
// always encode built-in kinds as protobuf and never fall back to JSON (client-go only falls back
// for CBOR), so a server that answers them must read protobuf. The tables come from the Go types
// of the pinned k8s.io/api, by reflection over their struct tags: the protobuf field number and
// wire type, the JSON name, and whether a zero value is kept in JSON (a pointer, or a field
// without omitempty), which is what decoding needs to produce the JSON the real server would
// store. Regenerate after changing the Kubernetes pin:
//
//	cd tests/realk8s/kube && go run ./protoschema > ../../../lbd/lab/apiserver/protobuf_fields.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// roots: the kinds the lab API server serves that a typed client may send (CRDs are applied as
// JSON by every client, so apiextensions is left out).
var roots = map[string]any{
	"v1/Namespace":                      corev1.Namespace{},
	"v1/Node":                           corev1.Node{},
	"v1/Service":                        corev1.Service{},
	"v1/Endpoints":                      corev1.Endpoints{},
	"v1/Event":                          corev1.Event{},
	"v1/Secret":                         corev1.Secret{},
	"v1/ConfigMap":                      corev1.ConfigMap{},
	"v1/ServiceAccount":                 corev1.ServiceAccount{},
	"v1/Pod":                            corev1.Pod{},
	"v1/DeleteOptions":                  metav1.DeleteOptions{},
	"discovery.k8s.io/v1/EndpointSlice": discoveryv1.EndpointSlice{},
	"events.k8s.io/v1/Event":            eventsv1.Event{},
	"coordination.k8s.io/v1/Lease":      coordinationv1.Lease{},
	"rbac.authorization.k8s.io/v1/Role": rbacv1.Role{},
	"rbac.authorization.k8s.io/v1/RoleBinding":        rbacv1.RoleBinding{},
	"rbac.authorization.k8s.io/v1/ClusterRole":        rbacv1.ClusterRole{},
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": rbacv1.ClusterRoleBinding{},
	"apps/v1/Deployment":                              appsv1.Deployment{},
	"apps/v1/DaemonSet":                               appsv1.DaemonSet{},
	"policy/v1/PodDisruptionBudget":                   policyv1.PodDisruptionBudget{},
}

// special: types with a protobuf form of their own, and the JSON it stands for.
var special = map[reflect.Type]string{
	reflect.TypeOf(metav1.Time{}):          "time",
	reflect.TypeOf(metav1.MicroTime{}):     "microtime",
	reflect.TypeOf(metav1.Duration{}):      "duration",
	reflect.TypeOf(resource.Quantity{}):    "quantity",
	reflect.TypeOf(intstr.IntOrString{}):   "intstr",
	reflect.TypeOf(metav1.FieldsV1{}):      "fieldsv1",
	reflect.TypeOf(runtime.RawExtension{}): "raw",
}

// field: [number, JSON name, type, repeated (0/1), keep a zero value (0/1)]. A type is a scalar
// (string, bytes, bool, int32, int64, uint32, uint64, double, float), a special (see above),
// "msg:NAME", "inline:NAME" (a message whose fields JSON puts in the parent) or
// "map:KEY:VALUE".
type field [5]any

type schema struct {
	Kinds    map[string]string
	Messages map[string][]field
}

func messageName(t reflect.Type) string {
	parts := strings.Split(t.PkgPath(), "/")
	if len(parts) >= 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, ".") + "." + t.Name()
}

type walker struct{ out schema }

func (w *walker) typeOf(t reflect.Type) string {
	if s, ok := special[t]; ok {
		return s
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int32:
		return "int32"
	case reflect.Int64, reflect.Int:
		return "int64"
	case reflect.Uint32:
		return "uint32"
	case reflect.Uint64:
		return "uint64"
	case reflect.Float64:
		return "double"
	case reflect.Float32:
		return "float"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "bytes"
		}
	case reflect.Struct:
		return "msg:" + w.message(t)
	}
	panic(fmt.Sprintf("protoschema: no protobuf form known for %v", t))
}

func (w *walker) message(t reflect.Type) string {
	name := messageName(t)
	if _, done := w.out.Messages[name]; done {
		return name
	}
	w.out.Messages[name] = nil // mark first: types refer to themselves (JSONSchemaProps)
	var fields []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("protobuf")
		if tag == "" {
			continue // TypeMeta: in the envelope, not in the message
		}
		opts := strings.Split(tag, ",")
		number, err := strconv.Atoi(opts[1])
		if err != nil {
			panic(fmt.Sprintf("protoschema: %v.%s: bad tag %q", t, f.Name, tag))
		}
		jsonTag := strings.Split(f.Tag.Get("json"), ",")
		jsonName, omitEmpty := jsonTag[0], false
		for _, o := range jsonTag[1:] {
			omitEmpty = omitEmpty || o == "omitempty"
		}
		ft, pointer := f.Type, false
		if ft.Kind() == reflect.Pointer {
			ft, pointer = ft.Elem(), true
		}
		repeated := 0
		var kind string
		switch {
		case jsonName == "" && ft.Kind() == reflect.Struct:
			kind = "inline:" + w.message(ft)
		case ft.Kind() == reflect.Map:
			kind = "map:" + w.typeOf(ft.Key()) + ":" + w.typeOf(ft.Elem())
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.Uint8:
			repeated, kind = 1, w.typeOf(ft.Elem())
			if ft.Elem().Kind() == reflect.Pointer {
				kind = w.typeOf(ft.Elem().Elem())
			}
		default:
			kind = w.typeOf(ft)
		}
		keep := 0
		if pointer || !omitEmpty {
			keep = 1
		}
		fields = append(fields, field{number, jsonName, kind, repeated, keep})
	}
	sort.Slice(fields, func(a, b int) bool { return fields[a][0].(int) < fields[b][0].(int) })
	w.out.Messages[name] = fields
	return name
}

func main() {
	w := &walker{schema{Kinds: map[string]string{}, Messages: map[string][]field{}}}
	for kind, value := range roots {
		w.out.Kinds[kind] = w.message(reflect.TypeOf(value))
	}
	// One line per kind and per message: small, and a new pin shows as a readable diff.
	var b strings.Builder
	writeMap := func(name string, m map[string]any, last bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "  %q: {\n", name)
		for i, k := range keys {
			value, err := json.Marshal(m[k])
			if err != nil {
				panic(err)
			}
			sep := ","
			if i == len(keys)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, "    %q: %s%s\n", k, value, sep)
		}
		if last {
			b.WriteString("  }\n")
		} else {
			b.WriteString("  },\n")
		}
	}
	kinds, messages := map[string]any{}, map[string]any{}
	for k, v := range w.out.Kinds {
		kinds[k] = v
	}
	for k, v := range w.out.Messages {
		messages[k] = v
	}
	b.WriteString("{\n")
	writeMap("kinds", kinds, false)
	writeMap("messages", messages, true)
	b.WriteString("}\n")
	if _, err := os.Stdout.WriteString(b.String()); err != nil {
		panic(err)
	}
}
